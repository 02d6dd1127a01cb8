--[[ accounts_register: create an account with unique e-mail and slug, atomically
  KEYS[1] e-mails hash  KEYS[2] api-key hash  KEYS[3] slugs hash  KEYS[4] the new account hash
  ARGV[1] lower-case e-mail  ARGV[2] account id  ARGV[3] key sha256  ARGV[4] n = number of slug
  candidates  ARGV[5..4+n] slug candidates in order of preference  ARGV[5+n..] field, value pairs
  returns {1, slug} | {-1} e-mail taken | {-3} every slug candidate taken ]]
--!include dirty
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then return {-1} end
local n = tonumber(ARGV[4])
local slug = false
for i = 5, 4 + n do
  if redis.call('HEXISTS', KEYS[3], ARGV[i]) == 0 then slug = ARGV[i]; break end
end
if not slug then return {-3} end
local id = ARGV[2]
redis.call('HSET', KEYS[1], ARGV[1], id)
redis.call('HSET', KEYS[2], ARGV[3], id)
redis.call('HSET', KEYS[3], slug, id)
local fields = {}
for i = 5 + n, #ARGV do fields[#fields + 1] = ARGV[i] end
redis.call('HSET', KEYS[4], unpack(fields))
redis.call('HSET', KEYS[4], 'slug', slug)
dirty(KEYS[4])
return {1, slug}
