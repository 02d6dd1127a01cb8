--[[ outcomes_record_many: record the outcomes of many executions of one partition (batch pull),
  each exactly once and atomically with its status effect, exactly as outcomes_record.lua does
  KEYS[1] claims: zset (execution, cue and index keys are derived from ARGV[2], same slot)
  ARGV[1] now: µs
  ARGV[2] prefix: the partition's key prefix
  ARGV[3] account_id
  ARGV[4..] outcomes: 5 values per outcome: execution id, outcome JSON, success "1" | "0",
    outcome_state, error text
  returns two values per outcome: OK and its new status | EXISTS, "" already recorded
    | NOT_FOUND, "" no such execution of the account ]]
--!include record_outcome
local now, pfx, acct = ARGV[1], ARGV[2], ARGV[3]
local out = {}
local defer, cues = {}, {}
for i = 4, #ARGV, 5 do
  local code, st = record_outcome(pfx, ARGV[i], acct, ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4],
    now, defer, cues)
  out[#out + 1] = code
  out[#out + 1] = st or ''
end
outcome_flush(pfx, defer, cues, now)
return out
