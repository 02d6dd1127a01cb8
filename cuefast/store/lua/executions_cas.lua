--[[ executions_cas: set fields of an execution only if its outcome and outcome_state are unchanged
  KEYS[1] execution hash
  ARGV[1] expected outcome JSON ("" = none)  ARGV[2] expected outcome_state ("" = none)
  ARGV[3..] field, value pairs
  returns 1 set | 0 changed meanwhile (re-read and retry) | -1 no such execution ]]
--!include dirty
local e = redis.call('HMGET', KEYS[1], 'id', 'oc', 'os')
if not e[1] then return -1 end
if (e[2] or '') ~= ARGV[1] or (e[3] or '') ~= ARGV[2] then return 0 end
local fields = {}
for i = 3, #ARGV do fields[#fields + 1] = ARGV[i] end
redis.call('HSET', KEYS[1], unpack(fields))
dirty(KEYS[1])
return 1
