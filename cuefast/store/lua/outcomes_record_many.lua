--[[ outcomes_record_many: record the outcomes of many executions of one partition (batch pull), each
  exactly once and atomically with its status effect, exactly as outcomes_record.lua does
  KEYS[1] claims zset  (execution, cue and index keys are derived from ARGV[1], same slot)
  ARGV[1] partition key prefix  ARGV[2] account id  ARGV[3] now µs, then 5 values per outcome:
  execution id, outcome JSON, success "1" | "0", outcome_state, error text
  returns one value per outcome: its new status | "-1" already recorded | "-2" not found ]]
--!include record_outcome
local pfx, acct, now = ARGV[1], ARGV[2], ARGV[3]
local out = {}
local defer, cues = {}, {}
for i = 4, #ARGV, 5 do
  local code, st = record_outcome(pfx, ARGV[i], acct, ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4],
    now, defer, cues)
  out[#out + 1] = code == 1 and st or tostring(code)
end
outcome_flush(pfx, defer, cues, now)
return out
