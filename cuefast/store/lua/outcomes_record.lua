--[[ outcomes_record: record an execution's outcome exactly once, atomically with its status effect
  KEYS[1] execution: the execution hash (the cue hash and indexes are derived from ARGV[2])
  ARGV[1] now: µs
  ARGV[2] prefix: the partition's key prefix
  ARGV[3] outcome: JSON
  ARGV[4] success: "1" | "0"
  ARGV[5] outcome_state
  ARGV[6] error: text
  returns {OK, status} | {EXISTS} an outcome is already recorded | {NOT_FOUND} no such execution ]]
--!include record_outcome
local now, pfx = ARGV[1], ARGV[2]
local eid = string.match(KEYS[1], 'exec:(.*)$')
local defer, cues = {}, {}
local code, st = record_outcome(pfx, eid, '', ARGV[3], ARGV[4], ARGV[5], ARGV[6], now, defer, cues)
if code ~= STATUS.OK then return {code} end
outcome_flush(pfx, defer, cues, now)
return {STATUS.OK, st}
