--[[ executions_bound: the bounds zset of one registry listed over partitions (an account's or a
  worker's; lua/lib/exec_index.lua) raised to cover what each of its cells holds — the upgrade of
  registries written before the bounds (layout 5); the puts keep them from then on
  KEYS[1] registry: hash, cell → count, "#<cell>" → claimed count
  returns the number of cells bounded ]]
--!include exec_index
local reg = KEYS[1]
local cells = redis.call('HKEYS', reg)
local n = 0
for _, field in ipairs(cells) do
  if string.byte(field) == 35 then  -- '#<cell>': its oldest claimed_at
    local cell = string.sub(field, 2)
    local first = redis.call('ZRANGE', reg .. '|c|' .. cell, 0, 0, 'WITHSCORES')
    if first[2] then redis.call('ZADD', reg .. '|b', 'GT', ix_neg(first[2]), 'c' .. cell) end
  else  -- its newest created
    local last = redis.call('ZREVRANGE', reg .. '|z|' .. field, 0, 0, 'WITHSCORES')
    if last[2] then
      redis.call('ZADD', reg .. '|b', 'GT', last[2], 'z' .. field)
      n = n + 1
    end
  end
end
return n
