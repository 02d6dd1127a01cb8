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
for i = 3, #ARGV do
  local h = cjson.decode(ARGV[i])
  local eid, acct, st = h['id'], h['acct'], h['st']
  local ek = pfx .. 'exec:' .. eid
  local flat = {}
  for f, v in pairs(h) do
    if f ~= 'id' then flat[#flat + 1] = f; flat[#flat + 1] = v end  -- the id is the key's
  end
  redis.call('HSET', ek, unpack(flat))
  -- where it was indexed before is not where it is now; a cap permit or place in a cap's
  -- waiting list (lib/cue_cap.lua) is not restored: the attempt is queued again below
  redis.call('HDEL', ek, 'ix', 'cp')
  exec_reindex(pfx, eid)
  local waiting = st == 'pending' and redis.call('HGET', pfx .. 'cue:' .. (h['cue'] or ''), 'bw') == eid
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
return {n, unpack(claimed)}
