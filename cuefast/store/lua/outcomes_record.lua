--[[ outcomes_record: record an execution's outcome exactly once, atomically with its status effect
  KEYS[1] execution hash   (the cue hash and indexes are derived from ARGV[5], same slot)
  ARGV[1] outcome JSON  ARGV[2] success "1" | "0"  ARGV[3] outcome_state  ARGV[4] error text
  ARGV[5] partition key prefix  ARGV[6] now µs
  returns {1, status} | {-1} an outcome is already recorded | {-2} no such execution ]]
--!include record_outcome
local eid = string.match(KEYS[1], 'exec:(.*)$')
local defer, cues = {}, {}
local code, st = record_outcome(ARGV[5], eid, '', ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[6], defer, cues)
if code ~= 1 then return {code} end
outcome_flush(ARGV[5], defer, cues, ARGV[6])
return {1, st}
