--[[ outcomes_record: record an execution's outcome exactly once, atomically with its status effect
  KEYS[1] execution: the execution hash (the cue hash, its config and indexes are derived from ARGV[2])
  ARGV[1] now: µs
  ARGV[2] prefix: the partition's key prefix
  ARGV[3] outcome: JSON
  ARGV[4] success: "1" | "0"
  ARGV[5] outcome_state: the state to record (unless ARGV[8..] names one for the cue's mode)
  ARGV[6] error: text
  ARGV[7] account_id: the execution must be this account's ("" = any account's)
  ARGV[8..] states: verification mode, outcome_state pairs: the state to record when the cue's
    config has that verification mode ("none" without one, or without the cue)
  returns {OK, status, outcome_state, created_at} | {EXISTS} an outcome is already recorded
    | {NOT_FOUND} no such execution (of the account) ]]
--!include record_outcome

local now, pfx, acct = ARGV[1], ARGV[2], ARGV[7]
local eid = string.match(KEYS[1], 'exec:(.*)$')
local states = nil
if #ARGV > 7 then  -- the cue's verification mode decides the state
  states = {}
  for i = #ARGV - 1, 8, -2 do states[ARGV[i]] = ARGV[i + 1] end  -- the first pair of a mode wins
end
local defer, cues = {}, {}
local code, st, state, ca = record_outcome(pfx, eid, acct, ARGV[3], ARGV[4], ARGV[5], ARGV[6], now, defer,
  cues, states)
if code ~= STATUS.OK then return {code} end
outcome_flush(pfx, defer, cues, now)  -- with the usage counters (lib/record_outcome.lua)
return {STATUS.OK, st, state, ca or ''}
