--[[ accounts_change_email: the account's new e-mail, on its shard (the middle step of an e-mail
  change: the new one is reserved already, the old one is released after)
  KEYS[1] account: the account hash
  ARGV[1] now: µs
  ARGV[2] email_lc: the new e-mail, lower-case
  ARGV[3] email: the new e-mail as submitted
  returns {OK, old email_lc} | {NOT_FOUND} no such account ]]
--!include dirty
local old = redis.call('HGET', KEYS[1], 'email_lc')
if not old then return {STATUS.NOT_FOUND} end
redis.call('HSET', KEYS[1], 'email', ARGV[3], 'email_lc', ARGV[2], 'updated', ARGV[1])
dirty(KEYS[1])
return {STATUS.OK, old}
