--[[ restore_executions: write snapshotted executions back into an empty partition (cuefast restore)
  KEYS[1] outbox: the partition's outbox stream
  ARGV[1] now: µs
  ARGV[2] prefix: the partition's key prefix "<pfx>:{pNN}:"
  ARGV[3..] executions: execution hashes as JSON objects
  Each hash is written as it was, with its listing indexes (cue, account) and the index its state
  needs to move on: webhook pending / retry_ready / delivering → the outbox (a due one) or the
  delayed zset (send_at later); retrying → the retry zset; an armed outcome deadline → deadlines;
  worker pending / retry_ready → the claimable indexes; worker delivering → claims. A jittered
  execution ('ft') waits for its fire_at instead of its scheduled_for. A pending execution its
  cue holds back ('bw', overlap buffer_one; cues are restored first) stays unqueued.
  Each hash is written once, with the `ix` its fields give, and its entries in the accounts' and
  workers' listing registries are written together at the end of the call (lib/exec_index.lua
  ix_deferred: one ZADD and one HINCRBY per cell zset and batch; a cue's registries at once, as
  a batch rarely holds two executions of one cue): when none of the batch's keys exists (a
  restore into an empty keyspace), no execution is read back. One whose key exists (`--force`;
  a repartition, which deletes the registries first; named twice) is taken out of the cells its
  stored `ix` names, replaced, and indexed where the doc says.
  returns {the number written, then 4 values per worker execution restored as claimed: account
    id, execution id, task ("" none), lease expiry µs} (the caller rebuilds the per-task claim
    cap permits from them: store/task_caps.py ``rebuild``) ]]
--!include work_index
--!include exec_index
local now_s, pfx = ARGV[1], ARGV[2]
local now = tonumber(now_s)
local final = {success = true, failed = true, missed = true, outcome_timeout = true, skipped = true,
  cancelled = true}
local n = 0
local claimed = {}
local function val(x, default) if x and x ~= '' then return x end return default end
local docs, keys = {}, {}
for i = 3, #ARGV do
  local h = cjson.decode(ARGV[i])
  docs[#docs + 1] = h
  keys[#keys + 1] = pfx .. 'exec:' .. h['id']
end
-- one EXISTS per 1,000 keys: almost always none exists, and then none is read back below
local any_exists = false
for i = 1, #keys, 1000 do
  if redis.call('EXISTS', unpack(keys, i, math.min(i + 999, #keys))) > 0 then any_exists = true end
end
local ixd = ix_deferred()
local made = {}  -- keys this call wrote (an execution twice in a batch: the second overwrites)
for i, h in ipairs(docs) do
  local eid, acct, cue, st = h['id'], h['acct'], h['cue'], h['st']
  local ek = keys[i]
  local flat = {}
  for f, v in pairs(h) do
    -- the id is the key's; where it was indexed before is not where it is now; a cap permit or
    -- place in a cap's waiting list (lib/cue_cap.lua) is not restored: the attempt is queued
    -- again below
    if f ~= 'id' and f ~= 'ix' and f ~= 'cp' then flat[#flat + 1] = f; flat[#flat + 1] = v end
  end
  local new = acct and cue and ix_of(st, h['os'], h['tb'], h['cla'], h['cw'])
  if new then flat[#flat + 1] = 'ix'; flat[#flat + 1] = new end
  if made[ek] or (any_exists and redis.call('EXISTS', ek) == 1) then
    -- out of wherever its stored `ix` says it is listed (nothing there when the registries are
    -- gone: a repartition deletes them first), then in where the doc says, at once (the
    -- deferred entries written first, so that the removal finds them)
    ix_flush(ixd)
    exec_unindex(pfx, eid)
    redis.call('DEL', ek)  -- the hash as the doc has it, no field of the one it replaces
    redis.call('HSET', ek, unpack(flat))
    if new then ix_move(pfx, eid, acct, cue, h['ca'], h['cla'] or '', '', new) end
  else
    redis.call('HSET', ek, unpack(flat))
    if new then ix_move(pfx, eid, acct, cue, h['ca'], h['cla'] or '', '', new, ixd) end
  end
  made[ek] = true
  local waiting = st == 'pending' and redis.call('HGET', pfx .. 'cue:' .. (cue or ''), 'bw') == eid
  if not final[st] and not waiting then
    local at = val(h['ft'], h['sf'])  -- jitter: available from fire_at
    local od = h['od']
    if od and od ~= '' and (not h['oc'] or h['oc'] == '') then redis.call('ZADD', pfx .. 'deadlines', od, eid) end
    if h['tr'] == 'worker' then
      if st == 'pending' or st == 'retry_ready' then
        work_add(pfx, acct, eid, at, h['tk'], h['ag'], val(h['ua'], at))
      elseif st == 'delivering' then
        redis.call('ZADD', pfx .. 'claims', val(h['lx'], now_s), eid)
        for _, v in ipairs({acct, eid, val(h['tk'], ''), val(h['lx'], now_s)}) do claimed[#claimed + 1] = v end
      end
    elseif st == 'retrying' then
      redis.call('ZADD', pfx .. 'retry', val(h['nxr'], now_s), eid)
    elseif st == 'pending' or st == 'retry_ready' or st == 'delivering' then
      if tonumber(at) > now and st == 'pending' then
        redis.call('ZADD', pfx .. 'delayed', at, eid)
      else
        redis.call('XADD', KEYS[1], '*', 'e', eid)
      end
    end
  end
  n = n + 1
end
ix_flush(ixd)
return {n, unpack(claimed)}
