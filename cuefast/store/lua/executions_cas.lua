--[[ executions_cas: set fields of an execution only if its outcome and outcome_state are unchanged
  KEYS[1] execution: the execution hash
  ARGV[1] outcome: the expected outcome JSON ("" = none)
  ARGV[2] outcome_state: the expected outcome_state ("" = none)
  ARGV[3..] fields: field, value pairs
  returns OK set | CONFLICT changed meanwhile (re-read and retry) | NOT_FOUND no such execution ]]
--!include dirty
--!include exec_index
local e = redis.call('HMGET', KEYS[1], 'acct', 'oc', 'os')
if not e[1] then return STATUS.NOT_FOUND end
local pfx, eid = string.match(KEYS[1], '^(.*)exec:(.*)$')
if (e[2] or '') ~= ARGV[1] or (e[3] or '') ~= ARGV[2] then return STATUS.CONFLICT end
local fields = {}
for i = 3, #ARGV do fields[#fields + 1] = ARGV[i] end
redis.call('HSET', KEYS[1], unpack(fields))
dirty(KEYS[1])
exec_reindex(pfx, eid)
return STATUS.OK
