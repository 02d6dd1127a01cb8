--[[ accounts_reserve_email: the first step of an e-mail change, on the global auth slot: the new
  e-mail is the account's (idempotent: a retried change finds it reserved already)
  KEYS[1] emails: hash, lower-case e-mail → account id
  ARGV[1] email_lc: the new e-mail, lower-case
  ARGV[2] account_id
  returns {OK} | {EXISTS} e-mail taken by another account ]]
local owner = redis.call('HGET', KEYS[1], ARGV[1])
if owner and owner ~= ARGV[2] then return {STATUS.EXISTS} end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return {STATUS.OK}
