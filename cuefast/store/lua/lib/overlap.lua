-- overlap: a cue's overlap policy (CueConfig.overlap, the cue hash's 'ov'; absent = allow) —
-- what a slot coming due does while the cue's previous execution is not final (docs/DESIGN.md
-- "Overlap policy"). The cue hash keeps 'rx', the last execution the scheduler released to run
-- (written only under a policy other than allow), so schedule_materialize.lua decides in O(1):
-- one HGET of that execution's status. 'bw' is the execution waiting behind it (buffer_one).
-- An execution is final when its status is one of OV_FINAL: the contract's terminal statuses
-- and the two of this feature. Non-final covers every state where an outcome is still expected:
-- a worker claim (delivering) waits for its outcome, and a webhook delivered with an armed
-- outcome deadline is pending_outcome; a webhook delivered without one is success (final).
--!include dirty
--!include work_index
--!include exec_index
local OV_FINAL = {
  success = true, failed = true, missed = true, outcome_timeout = true, skipped = true, cancelled = true,
}
local OV_SKIPPED = 'Skipped: the previous execution was still running (overlap: skip)'
local OV_SKIPPED_WAITING = 'Skipped: an execution was already waiting (overlap: buffer_one)'
local OV_SUPERSEDED = 'Cancelled: a later slot of the same pass superseded it (overlap: cancel_previous)'

-- true while execution `eid` (an id, or nil / '' for none) exists and is not final
local function ov_running(pfx, eid)
  if not eid or eid == '' then return false end
  local st = redis.call('HGET', pfx .. 'exec:' .. eid, 'st')
  return st ~= false and not OV_FINAL[st]
end

-- cancel_previous: end the running execution `eid` as cancelled (final) — out of the queue its
-- status has it wait in (claimable indexes and unclaimed window, retry zset, the delayed zset for
-- a jittered webhook one waiting for its fire_at 'ft'; the deadline zset when a deadline is
-- armed). A worker
-- holding the claim learns it at its next lease extension (claims_heartbeat.lua answers
-- "cancelled"); a webhook attempt in flight is not recalled, and its result no longer changes
-- the status (delivery_finish.lua finds it not delivering); an outcome reported afterwards is
-- stored as late (lib/record_outcome.lua: cancelled is final). No on_failure, no alert, no
-- usage `failed`: it was superseded, not failed. Its claim lease is left for the holder's
-- fenced calls to clear; its per-task claim cap permit (account slot) is the caller's to give
-- back. `dirt` (optional): a list the caller writes as dirty marks (else one SADD now). Returns
-- false when it was not running, 'claim' when it was a claimed worker execution, else true.
local OV_CANCELLED = 'Cancelled: a later slot came due (overlap: cancel_previous)'
local function ov_cancel(pfx, eid, now, dirt)
  local ek = pfx .. 'exec:' .. eid
  local e = redis.call('HMGET', ek, 'st', 'tr', 'acct', 'tk', 'ag', 'od', 'ft')
  local st = e[1]
  if not st or OV_FINAL[st] then return false end
  if e[2] == 'worker' then
    if st == 'pending' or st == 'retry_ready' then work_rem(pfx, e[3], eid, e[4] or '', e[5] or '') end
  elseif st == 'pending' and e[7] then
    redis.call('ZREM', pfx .. 'delayed', eid)  -- jitter: waiting for its fire_at
  elseif st == 'retrying' then
    redis.call('ZREM', pfx .. 'retry', eid)
    redis.call('HDEL', ek, 'nxr')
  end
  if e[6] and e[6] ~= '' then redis.call('ZREM', pfx .. 'deadlines', eid) end
  redis.call('HSET', ek, 'st', 'cancelled', 'ua', now, 'em', OV_CANCELLED)
  if dirt then dirt[#dirt + 1] = 'exec:' .. eid else dirty_at(pfx, 'exec:' .. eid) end
  exec_reindex(pfx, eid)
  return (e[2] == 'worker' and st == 'delivering') and 'claim' or true
end

-- buffer_one: the execution waiting behind the running one ('bw': created pending, not queued)
-- is released — queued to the outbox (webhook) or listed claimable (worker; its unclaimed
-- window starts now), or with jitter not before its fire_at 'ft' (the delayed zset; the work
-- indexes scored by it) — and made the cue's 'rx' — by whichever script makes the running one
-- final.
-- Every such script calls this after writing the final status (outcome recorded, delivery
-- succeeded or failed for good, lease reaped to failed, unclaimed to missed, deadline to
-- outcome_timeout): one HGET when the cue has nothing waiting. Releases only while the cue's
-- 'rx' is final, so an unrelated execution ending (a manual fire) releases nothing early.
-- Returns true when nothing waits any more (none did, or it was released). `bw` (optional): the
-- cue's 'bw' field when the caller has read it (false: absent; then no call at all).
local function ov_settled(pfx, cue_id, now, bw)
  local ck = pfx .. 'cue:' .. cue_id
  if bw == nil then bw = redis.call('HGET', ck, 'bw') end
  if not bw then return true end
  if ov_running(pfx, redis.call('HGET', ck, 'rx')) then return false end
  redis.call('HDEL', ck, 'bw')
  dirty_at(pfx, 'cue:' .. cue_id)
  local ek = pfx .. 'exec:' .. bw
  local e = redis.call('HMGET', ek, 'st', 'tr', 'acct', 'sf', 'pl', 'ft')
  if e[1] ~= 'pending' then return true end  -- gone, or moved on by other means
  redis.call('HSET', ck, 'rx', bw)
  local fire = tonumber(e[6])  -- jitter: not before its fire_at
  if e[2] == 'webhook' then
    if fire and fire > tonumber(now) then
      redis.call('ZADD', pfx .. 'delayed', e[6], bw)
    else
      redis.call('XADD', pfx .. 'outbox', '*', 'e', bw)
    end
  else
    local tk, ag = task_agent(e[5] or '{}')
    if tk ~= '' then redis.call('HSET', ek, 'tk', tk) end
    if ag ~= '' then redis.call('HSET', ek, 'ag', ag) end
    work_add(pfx, e[3], bw, e[6] or e[4], tk, ag, (fire and fire > tonumber(now)) and e[6] or now)
    work_signal(pfx, e[3])
  end
  return true
end
