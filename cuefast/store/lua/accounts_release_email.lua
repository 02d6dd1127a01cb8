--[[ accounts_release_email: the last step of an e-mail change, on the global auth slot: the old
  e-mail is free again (when the account still holds it)
  KEYS[1] emails: hash, lower-case e-mail → account id
  ARGV[1] email_lc: the old e-mail, lower-case
  ARGV[2] account_id
  returns {OK} released | {NOT_FOUND} not the account's ]]
if redis.call('HGET', KEYS[1], ARGV[1]) ~= ARGV[2] then return {STATUS.NOT_FOUND} end
redis.call('HDEL', KEYS[1], ARGV[1])
return {STATUS.OK}
