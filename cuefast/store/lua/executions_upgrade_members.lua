--[[ executions_upgrade_members: one step of rewriting a listing index zset's members written before
  layout 2 (the 36-character execution ids) as ix_member's 16 bytes (lua/lib/exec_index.lua), same
  scores; the cell's count does not move (one member out, the same execution in)
  KEYS[1] zset: a cell zset of a registry ("<registry>|z|<cell>" or "|c|")
  ARGV[1] cursor: the ZSCAN cursor ("0" to start)
  ARGV[2] count: the ZSCAN COUNT hint
  returns {next cursor ("0": done), members rewritten} ]]
--!include exec_index
local res = redis.call('ZSCAN', KEYS[1], ARGV[1], 'COUNT', tonumber(ARGV[2]))
local found, n = res[2], 0
for i = 1, #found, 2 do
  local eid = found[i]
  local m = ix_member(eid)
  if m ~= eid then
    local score = redis.call('ZSCORE', KEYS[1], eid)
    if score then
      redis.call('ZREM', KEYS[1], eid)
      redis.call('ZADD', KEYS[1], score, m)
      n = n + 1
    end
  end
end
return {res[1], n}
