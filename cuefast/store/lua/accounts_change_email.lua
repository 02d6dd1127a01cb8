--[[ accounts_change_email: move an account to a new e-mail, keeping e-mails unique
  KEYS[1] e-mails hash  KEYS[2] account hash
  ARGV[1] account id  ARGV[2] new lower-case e-mail  ARGV[3] new e-mail as submitted  ARGV[4] now µs
  returns {1} | {-1} e-mail taken by another account ]]
--!include dirty
local owner = redis.call('HGET', KEYS[1], ARGV[2])
if owner and owner ~= ARGV[1] then return {-1} end
local old = redis.call('HGET', KEYS[2], 'email_lc')
if old and old ~= ARGV[2] then redis.call('HDEL', KEYS[1], old) end
redis.call('HSET', KEYS[1], ARGV[2], ARGV[1])
redis.call('HSET', KEYS[2], 'email', ARGV[3], 'email_lc', ARGV[2], 'updated', ARGV[4])
dirty(KEYS[2])
return {1}
