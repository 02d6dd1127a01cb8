-- overlap: a cue's overlap policy (CueConfig.overlap, the cue hash's 'ov'; absent = allow) —
-- what a slot coming due does while the cue's previous execution is not final (docs/DESIGN.md
-- "Overlap policy"). The cue hash keeps 'lx', the last execution the scheduler released to run
-- (written only under a policy other than allow), so schedule_materialize.lua decides in O(1):
-- one HGET of that execution's status. 'bw' is the execution waiting behind it (buffer_one).
-- An execution is final when its status is one of OV_FINAL: the contract's terminal statuses
-- and the two of this feature. Non-final covers every state where an outcome is still expected:
-- a worker claim (delivering) waits for its outcome, and a webhook delivered with an armed
-- outcome deadline is pending_outcome; a webhook delivered without one is success (final).
local OV_FINAL = {
  success = true, failed = true, missed = true, outcome_timeout = true, skipped = true, cancelled = true,
}
local OV_SKIPPED = 'Skipped: the previous execution was still running (overlap: skip)'
local OV_SKIPPED_WAITING = 'Skipped: an execution was already waiting (overlap: buffer_one)'

-- true while execution `eid` (an id, or nil / '' for none) exists and is not final
local function ov_running(pfx, eid)
  if not eid or eid == '' then return false end
  local st = redis.call('HGET', pfx .. 'exec:' .. eid, 'st')
  return st ~= false and not OV_FINAL[st]
end
