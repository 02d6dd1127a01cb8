--[[ claims_claim: lease claimable worker executions to a worker (the one claim path of both doors)
  KEYS[1] the index zset to take from: the account's work zset, or a task/agent-filtered one
  KEYS[2] claims zset (execution id → lease expiry µs)  KEYS[3] the account's claimed zset
  (execution id → claimed_at µs)  (execution, cue and other index keys are derived from ARGV[1],
  the partition's key prefix, in the same slot)
  ARGV[1] partition key prefix  ARGV[2] account id  ARGV[3] worker id  ARGV[4] lease µs
  ARGV[5] count: claim up to this many of the oldest available in KEYS[1] (0 = claim the ids
  in ARGV[7..] instead)  ARGV[6] now µs  ARGV[7..] execution ids (count 0)
  returns 9 values per claimed execution (count mode) or per id (ids mode):
    {1, id, cue id, cue name, scheduled_for, attempts after this claim, payload, task, lease expiry}
  | {-1, id, ...} no such execution of this account | {-2, id, ...} not claimable now ]]
--!include dirty
--!include work_index
local pfx, acct, worker = ARGV[1], ARGV[2], ARGV[3]
local lease, count, now = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local now_s = ARGV[6]
local lx = string.format('%.0f', now + lease)
local base = pfx .. 'work:' .. acct
local names = {}
local out = {}

local function row(code, eid, r)
  out[#out + 1] = code
  out[#out + 1] = eid
  for i = 1, 7 do out[#out + 1] = r and r[i] or '' end
end

local defer = {}

-- 1 claimed | -1 not this account's | -2 not claimable; `checked`: the caller read it from an
-- index with a score ≤ now (count mode), so availability needs no second look
local function claim(eid, checked)
  local ek = pfx .. 'exec:' .. eid
  local e = redis.call('HMGET', ek, 'st', 'tr', 'acct', 'sf', 'tk', 'ag', 'sa', 'cue', 'pl', 'att')
  if not e[1] or e[3] ~= acct then return -1 end
  if e[2] ~= 'worker' or (e[1] ~= 'pending' and e[1] ~= 'retry_ready') then return -2 end
  if not checked then
    local listed = redis.call('ZSCORE', base, eid)
    if not listed or tonumber(listed) > now then return -2 end
  end
  local att = (tonumber(e[10]) or 0) + 1
  if not e[7] or e[7] == '' then
    redis.call('HSET', ek, 'st', 'delivering', 'cw', worker, 'cla', now_s, 'la', now_s, 'ua', now_s,
      'lx', lx, 'ls', ARGV[4], 'lh', '', 'att', att, 'sa', now_s)
  else
    redis.call('HSET', ek, 'st', 'delivering', 'cw', worker, 'cla', now_s, 'la', now_s, 'ua', now_s,
      'lx', lx, 'ls', ARGV[4], 'lh', '', 'att', att)
  end
  work_rem(pfx, acct, eid, e[5], e[6], defer)
  dirty(ek)
  defer_zadd(defer, KEYS[2], lx, eid)
  defer_zadd(defer, KEYS[3], now_s, eid)
  local cue = e[8]
  if names[cue] == nil then names[cue] = redis.call('HGET', pfx .. 'cue:' .. cue, 'name') or '' end
  row(1, eid, {cue, names[cue], e[4], att, e[9] or '{}', e[5] or '', lx})
  return 1
end

if count == 0 then
  for i = 7, #ARGV do
    local code = claim(ARGV[i], false)
    if code ~= 1 then row(code, ARGV[i], nil) end
  end
  defer_flush(defer)
  return out
end

local claimed = 0
for _ = 1, 4 do  -- stale index entries are dropped and the next ones tried (bounded)
  local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now_s, 'LIMIT', 0, count - claimed)
  if #ids == 0 then break end
  for _, eid in ipairs(ids) do
    if claim(eid, true) == 1 then claimed = claimed + 1 else defer_zrem(defer, KEYS[1], eid) end
  end
  defer_flush(defer)
  if claimed >= count then break end
end
return out
