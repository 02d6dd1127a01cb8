--[[ accounts_change_email: move an account to a new e-mail, keeping e-mails unique
  KEYS[1] emails: hash, lower-case e-mail → account id
  KEYS[2] account: the account hash
  ARGV[1] now: µs
  ARGV[2] account_id
  ARGV[3] email_lc: the new e-mail, lower-case
  ARGV[4] email: the new e-mail as submitted
  returns {OK} | {EXISTS} e-mail taken by another account ]]
--!include dirty
local now, acct, email_lc, email = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local owner = redis.call('HGET', KEYS[1], email_lc)
if owner and owner ~= acct then return {STATUS.EXISTS} end
local old = redis.call('HGET', KEYS[2], 'email_lc')
if old and old ~= email_lc then redis.call('HDEL', KEYS[1], old) end
redis.call('HSET', KEYS[1], email_lc, acct)
redis.call('HSET', KEYS[2], 'email', email, 'email_lc', email_lc, 'updated', now)
dirty(KEYS[2])
return {STATUS.OK}
