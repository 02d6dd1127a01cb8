--[[ outcomes_record: record an execution's outcome exactly once, atomically with its status effect
  KEYS[1] execution: the execution hash (the cue hash, its config and indexes are derived from ARGV[2])
  ARGV[1] now: µs
  ARGV[2] prefix: the partition's key prefix
  ARGV[3] outcome: JSON
  ARGV[4] success: "1" | "0"
  ARGV[5] outcome_state: the state to record (unless ARGV[8..] names one for the cue's mode)
  ARGV[6] error: text
  ARGV[7] account_id: the execution must be this account's ("" = any account's)
  ARGV[8] usage_ttl_s: count the outcome in the partition's monthly usage hash of the execution's
    account and creation month, `<prefix>usage:<account>:<YYYY-MM>` (``reported`` and
    ``succeeded`` / ``failed`` += 1), and give it this TTL when the first outcome creates it
    ("" = not counted here)
  ARGV[9..] states: verification mode, outcome_state pairs: the state to record when the cue's
    config has that verification mode ("none" without one, or without the cue)
  returns {OK, status, outcome_state, created_at} | {EXISTS} an outcome is already recorded
    | {NOT_FOUND} no such execution (of the account) ]]
--!include record_outcome

-- "YYYY-MM" (UTC) of an instant in µs (days to civil date: H. Hinnant's algorithm)
local function month_of(us)
  local f = math.floor
  local z = f(us / 86400000000) + 719468
  local era = f(z / 146097)
  local doe = z - era * 146097
  local yoe = f((doe - f(doe / 1460) + f(doe / 36524) - f(doe / 146096)) / 365)
  local doy = doe - (365 * yoe + f(yoe / 4) - f(yoe / 100))
  local mp = f((5 * doy + 2) / 153)
  local m = mp < 10 and mp + 3 or mp - 9
  return string.format('%04d-%02d', yoe + era * 400 + (m <= 2 and 1 or 0), m)
end

local now, pfx, acct = ARGV[1], ARGV[2], ARGV[7]
local eid = string.match(KEYS[1], 'exec:(.*)$')
local states = nil
if #ARGV > 8 then  -- the cue's verification mode decides the state
  states = {}
  for i = #ARGV - 1, 9, -2 do states[ARGV[i]] = ARGV[i + 1] end  -- the first pair of a mode wins
end
local defer, cues = {}, {}
local code, st, state, ca, eacct = record_outcome(pfx, eid, acct, ARGV[3], ARGV[4], ARGV[5], ARGV[6], now, defer,
  cues, states)
if code ~= STATUS.OK then return {code} end
outcome_flush(pfx, defer, cues, now)
if ARGV[8] ~= '' then  -- by creation month (§13.1; an execution without one: now's)
  local uk = pfx .. 'usage:' .. eacct .. ':' .. month_of(tonumber(ca) or tonumber(now))
  -- only this script writes the hash, every `reported` with the other field: the first one
  -- created it and sets its TTL (from the month's first outcome, so it still outlives the month)
  if redis.call('HINCRBY', uk, 'reported', 1) == 1 then redis.call('EXPIRE', uk, tonumber(ARGV[8])) end
  redis.call('HINCRBY', uk, ARGV[4] == '1' and 'succeeded' or 'failed', 1)
end
return {STATUS.OK, st, state, ca or ''}
