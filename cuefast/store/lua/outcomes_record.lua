--[[ outcomes_record: record outcomes of executions of one partition — one request's, those of one
  account that arrived together (Outcomes.report) or a worker's batch (Outcomes.record_many) — in
  order, each exactly once and atomically with its status effect
  KEYS[1] claims: zset (execution, cue and index keys are derived from ARGV[2], same slot)
  ARGV[1] now: µs
  ARGV[2] prefix: the partition's key prefix
  ARGV[3] account_id: each execution must be this account's ("" = any account's)
  ARGV[4..] outcomes: per outcome: execution id, outcome JSON, success "1" | "0", outcome_state
    (the state to record unless its pairs name one for the cue's mode), error text, n, then n
    (verification mode, outcome_state) pairs: the state to record when the cue's config has that
    verification mode ("none" without one, or without the cue; the first pair of a mode wins)
  returns four values per outcome: OK, status, outcome_state, created_at (or "") | EXISTS, "", "",
    "" an outcome is already recorded (also by an earlier outcome of this call) | NOT_FOUND, "",
    "", "" no such execution (of the account) ]]
--!include record_outcome

local now, pfx, acct = ARGV[1], ARGV[2], ARGV[3]
local out, defer, cues = {}, {}, {}
-- more than one outcome: the listing moves are written once per zset at the end (a single one
-- moves at once: collecting would only add tables)
local ixd = #ARGV > 9 + 2 * (tonumber(ARGV[9]) or 0) and ix_deferred(true) or nil
local i = 4
while i <= #ARGV do
  local n = tonumber(ARGV[i + 5])
  local states = nil
  if n > 0 then  -- the cue's verification mode decides the state
    states = {}
    for j = i + 4 + 2 * n, i + 6, -2 do states[ARGV[j]] = ARGV[j + 1] end  -- the first pair of a mode wins
  end
  local code, st, state, ca = record_outcome(pfx, ARGV[i], acct, ARGV[i + 1], ARGV[i + 2], ARGV[i + 3],
    ARGV[i + 4], now, defer, cues, states, ixd)
  if code == STATUS.OK then
    out[#out + 1] = code; out[#out + 1] = st; out[#out + 1] = state; out[#out + 1] = ca or ''
  else
    out[#out + 1] = code; out[#out + 1] = ''; out[#out + 1] = ''; out[#out + 1] = ''
  end
  i = i + 6 + 2 * n
end
outcome_flush(pfx, defer, cues, now, ixd)  -- with the usage counters (lib/record_outcome.lua)
return out
