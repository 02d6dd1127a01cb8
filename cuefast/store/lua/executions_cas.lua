--[[ executions_cas: set fields of an execution only if its outcome and outcome_state are unchanged
  KEYS[1] execution: the execution hash
  ARGV[1] outcome: the expected outcome JSON ("" = none)
  ARGV[2] outcome_state: the expected outcome_state ("" = none)
  ARGV[3] alert_at: "" = no alert; else µs: when the fields make outcome_state
    verification_failed, raise the verification_failed alert (cuefast's verification checks)
  ARGV[4..] fields: field, value pairs
  returns OK set | CONFLICT changed meanwhile (re-read and retry) | NOT_FOUND no such execution ]]
--!include alert
--!include exec_index
local e = redis.call('HMGET', KEYS[1], 'acct', 'oc', 'os', 'cue', 'tr')
if not e[1] then return STATUS.NOT_FOUND end
local pfx, eid = string.match(KEYS[1], '^(.*)exec:(.*)$')
if (e[2] or '') ~= ARGV[1] or (e[3] or '') ~= ARGV[2] then return STATUS.CONFLICT end
local fields, failed = {}, false
for i = 4, #ARGV, 2 do
  fields[#fields + 1] = ARGV[i]
  fields[#fields + 1] = ARGV[i + 1]
  if ARGV[i] == 'os' and ARGV[i + 1] == 'verification_failed' then failed = true end
end
redis.call('HSET', KEYS[1], unpack(fields))
dirty(KEYS[1])
exec_reindex(pfx, eid)
if failed and ARGV[3] ~= '' and e[4] then
  alert_verification_failed(pfx, eid, e[4], e[1], e[5], ARGV[3])
end
return STATUS.OK
