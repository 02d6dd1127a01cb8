--[[ claims_claim: lease claimable worker executions to a worker (the one claim path of both doors;
  execution, cue and other index keys are derived from ARGV[2], the partition's key prefix, in
  the same slot)
  KEYS[1] index: the zset to take from: the account's work zset, or a task/agent-filtered one
  KEYS[2] claims: zset, execution id → lease expiry µs
  ARGV[1] now: µs
  ARGV[2] prefix: the partition's key prefix
  ARGV[3] account_id
  ARGV[4] worker_id
  ARGV[5] lease_us
  ARGV[6] count: claim up to this many of the oldest available in KEYS[1] (0 = claim the ids in
    ARGV[8..] instead)
  ARGV[7] budget: "" (no task cap) | "task\nn\ntask\nn…": the permits claims_cap_take.lua
    reserved for this claim per capped task; an execution of a capped task with none left is
    not claimed and stays in its index (WRONG_STATE in ids mode)
  ARGV[8..] execution_ids: with count 0
  returns 10 values per claimed execution (count mode) or per id (ids mode):
    {OK, id, cue id, cue name, scheduled_for, attempts after this claim, payload, task, lease expiry,
     fire_at ("" = scheduled_for: no jitter)}
    | {NOT_FOUND, id, ...} no such execution of this account | {WRONG_STATE, id, ...} not
    claimable now ]]
--!include dirty
--!include work_index
--!include exec_index
local now_s, pfx, acct, worker, lease_s = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local now, lease, count = tonumber(now_s), tonumber(lease_s), tonumber(ARGV[6])
local lx = string.format('%.0f', now + lease)
local budget = nil
if ARGV[7] ~= '' then
  budget = {}
  for task, n in string.gmatch(ARGV[7] .. '\n', '([^\n]*)\n([^\n]*)\n') do budget[task] = tonumber(n) end
end
local CAPPED = 0
local base = pfx .. 'work:' .. acct
local names = {}
local out = {}

local function row(code, eid, r)
  out[#out + 1] = code
  out[#out + 1] = eid
  for i = 1, 8 do out[#out + 1] = r and r[i] or '' end
end

local defer = {}
-- a batch's listing moves (lib/exec_index.lua), one write per zset of the accounts' and the
-- workers' registries at the end (an execution moves at most once here: a second listing of it
-- finds it delivering), and the snapshot dirty marks with one SADD
local ixd = ix_deferred()
local marks = {}
local dirt = dirty_batch(pfx, marks)

-- OK claimed | NOT_FOUND not this account's | WRONG_STATE not claimable; `checked`: the caller read it from an
-- index with a score ≤ now (count mode), so availability needs no second look
local function claim(eid, checked)
  local ek = pfx .. 'exec:' .. eid
  local e = redis.call('HMGET', ek, 'st', 'tr', 'acct', 'sf', 'tk', 'ag', 'sa', 'cue', 'pl', 'att', 'ft', 'ca', 'os',
    'tb', 'ix')
  if not e[1] or e[3] ~= acct then return STATUS.NOT_FOUND end
  if e[2] ~= 'worker' or (e[1] ~= 'pending' and e[1] ~= 'retry_ready') then return STATUS.WRONG_STATE end
  if not checked then
    local listed = redis.call('ZSCORE', base, eid)
    if not listed or tonumber(listed) > now then return STATUS.WRONG_STATE end
  end
  local left = budget and e[5] and budget[e[5]]
  if left then
    if left <= 0 then return CAPPED end
    budget[e[5]] = left - 1
  end
  local att = (tonumber(e[10]) or 0) + 1
  -- one write of the hash: the claim's fields and `ix`, the cells it moves to (ix_move: the
  -- status is new, so the cells always change)
  local w = {'st', 'delivering', 'cw', worker, 'cla', now_s, 'la', now_s, 'ua', now_s,
    'lx', lx, 'ls', lease_s, 'lh', '', 'att', string.format('%d', att)}
  if not e[7] or e[7] == '' then w[#w + 1] = 'sa'; w[#w + 1] = now_s end
  local new = ix_of('delivering', e[13], e[14], now_s, worker)
  if ix_move(pfx, eid, e[3], e[8], e[12], now_s, e[15] or '', new, ixd) then
    w[#w + 1] = 'ix'; w[#w + 1] = new
  end
  redis.call('HSET', ek, unpack(w))
  work_rem(pfx, acct, eid, e[5], e[6], defer)
  dirt[#dirt + 1] = 'exec:' .. eid
  defer_zadd(defer, KEYS[2], lx, eid)
  local cue = e[8]
  if names[cue] == nil then names[cue] = redis.call('HGET', pfx .. 'cue:' .. cue, 'name') or '' end
  row(STATUS.OK, eid, {cue, names[cue], e[4], att, e[9] or '{}', e[5] or '', lx, e[11] or ''})
  return STATUS.OK
end

if count == 0 then
  for i = 8, #ARGV do
    local code = claim(ARGV[i], false)
    if code == CAPPED then code = STATUS.WRONG_STATE end
    if code ~= STATUS.OK then row(code, ARGV[i], nil) end
  end
  defer_flush(defer)
  ix_flush(ixd)
  dirty_flush(marks)
  return out
end

local claimed, skipped = 0, 0
for _ = 1, 4 do  -- stale index entries are dropped and the next ones tried (bounded)
  local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now_s, 'LIMIT', skipped, count - claimed)
  if #ids == 0 then break end
  for _, eid in ipairs(ids) do
    local code = claim(eid, true)
    if code == STATUS.OK then
      claimed = claimed + 1
    elseif code == CAPPED then  -- over its task's cap: stays listed, in order, for later
      skipped = skipped + 1
    else
      defer_zrem(defer, KEYS[1], eid)
    end
  end
  defer_flush(defer)
  if claimed >= count then break end
end
ix_flush(ixd)
dirty_flush(marks)
return out
