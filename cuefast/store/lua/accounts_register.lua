--[[ accounts_register: reserve a new account's e-mail and the first free slug, atomically, on the
  global auth slot (the second step of a registration: the account exists on its shard already)
  KEYS[1] emails: hash, lower-case e-mail → account id
  KEYS[2] slugs: hash, slug → account id
  ARGV[1] email_lc: the lower-case e-mail
  ARGV[2] account_id
  ARGV[3] slug_count: n, the number of slug candidates
  ARGV[4..] slugs: n slug candidates in order of preference
  returns {OK, slug} | {EXISTS} e-mail taken | {EXHAUSTED} every slug candidate taken ]]
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then return {STATUS.EXISTS} end
local n = tonumber(ARGV[3])
local slug = false
for i = 4, 3 + n do
  if redis.call('HEXISTS', KEYS[2], ARGV[i]) == 0 then slug = ARGV[i]; break end
end
if not slug then return {STATUS.EXHAUSTED} end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('HSET', KEYS[2], slug, ARGV[2])
return {STATUS.OK, slug}
