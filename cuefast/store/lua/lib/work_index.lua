-- work_index: the claimable indexes of one worker execution (all keys derived from the partition
-- prefix, so they share its slot). An execution is listed under its account (all tasks), and when
-- its effective payload has a string `task` / `agent`, also under that task, that agent and the
-- pair, so filtered claims read an index of exactly the matching work (filter before limit).
local function work_keys(pfx, acct, tk, ag)
  local base = pfx .. 'work:' .. acct
  local ks = {base}
  if tk and tk ~= '' then ks[#ks + 1] = base .. ':t:' .. tk end
  if ag and ag ~= '' then ks[#ks + 1] = base .. ':a:' .. ag end
  if tk and tk ~= '' and ag and ag ~= '' then
    ks[#ks + 1] = base .. ':ta:' .. string.len(tk) .. ':' .. tk .. ':' .. ag
  end
  return ks
end

-- listed: claimable from now on (score scheduled_for µs), unclaimed window from `avail` µs,
-- and a wake-up signal for long-polling claimers
local function work_add(pfx, acct, eid, sf, tk, ag, avail)
  for _, k in ipairs(work_keys(pfx, acct, tk, ag)) do redis.call('ZADD', k, sf, eid) end
  redis.call('ZADD', pfx .. 'unclaimed', avail, eid)
end

-- `defer` (optional): collect the removals in a table written by defer_flush, one ZREM per key
-- for a whole batch instead of one per execution and key
local function work_rem(pfx, acct, eid, tk, ag, defer)
  local ks = work_keys(pfx, acct, tk, ag)
  ks[#ks + 1] = pfx .. 'unclaimed'
  for _, k in ipairs(ks) do
    if defer then
      local t = defer[k]
      if not t then t = {}; defer[k] = t end
      t[#t + 1] = eid
    else
      redis.call('ZREM', k, eid)
    end
  end
end

-- deferred removals (key → members), deferred additions under the key '+' .. key
-- (key → score, member, …) and set additions under the key '!' .. key (key → members)
local function defer_flush(defer)
  for k, t in pairs(defer) do
    local op = string.sub(k, 1, 1)
    if op == '!' then
      for i = 1, #t, 1000 do redis.call('SADD', string.sub(k, 2), unpack(t, i, math.min(i + 999, #t))) end
    elseif op == '+' then
      for i = 1, #t, 1000 do redis.call('ZADD', string.sub(k, 2), unpack(t, i, math.min(i + 999, #t))) end
    else
      for i = 1, #t, 1000 do redis.call('ZREM', k, unpack(t, i, math.min(i + 999, #t))) end
    end
    defer[k] = nil
  end
end

local function defer_zrem(defer, k, member)
  local t = defer[k]
  if not t then t = {}; defer[k] = t end
  t[#t + 1] = member
end

local function defer_zadd(defer, k, score, member)
  local t = defer['+' .. k]
  if not t then t = {}; defer['+' .. k] = t end
  t[#t + 1] = score
  t[#t + 1] = member
end

local function work_signal(pfx, acct)
  redis.call('XADD', pfx .. 'worksig', 'MAXLEN', '~', 1000, '*', 'a', acct)
end

-- the `task` and `agent` strings of a payload JSON ("" when absent or not a string)
local function task_agent(payload)
  local ok, obj = pcall(cjson.decode, payload)
  if not ok or type(obj) ~= 'table' then return '', '' end
  local tk, ag = obj['task'], obj['agent']
  return (type(tk) == 'string' and tk or ''), (type(ag) == 'string' and ag or '')
end
