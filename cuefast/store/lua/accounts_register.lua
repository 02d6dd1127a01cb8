--[[ accounts_register: create an account with unique e-mail and slug, atomically
  KEYS[1] emails: hash, lower-case e-mail → account id
  KEYS[2] api_keys: hash, API-key sha256 → account id
  KEYS[3] slugs: hash, slug → account id
  KEYS[4] account: the new account's hash
  KEYS[5] cue_partitions: its cue-partition bitmap, created empty (tracked from the start)
  ARGV[1] email_lc: the lower-case e-mail
  ARGV[2] account_id
  ARGV[3] key_sha: sha256 hex of the API key
  ARGV[4] slug_count: n, the number of slug candidates
  ARGV[5..] slugs_and_fields: n slug candidates in order of preference, then field, value pairs
  returns {OK, slug} | {EXISTS} e-mail taken | {EXHAUSTED} every slug candidate taken ]]
--!include dirty
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then return {STATUS.EXISTS} end
local n = tonumber(ARGV[4])
local slug = false
for i = 5, 4 + n do
  if redis.call('HEXISTS', KEYS[3], ARGV[i]) == 0 then slug = ARGV[i]; break end
end
if not slug then return {STATUS.EXHAUSTED} end
local id = ARGV[2]
redis.call('HSET', KEYS[1], ARGV[1], id)
redis.call('HSET', KEYS[2], ARGV[3], id)
redis.call('HSET', KEYS[3], slug, id)
local fields = {}
for i = 5 + n, #ARGV do fields[#fields + 1] = ARGV[i] end
redis.call('HSET', KEYS[4], unpack(fields))
redis.call('HSET', KEYS[4], 'slug', slug)
redis.call('SET', KEYS[5], '')
dirty(KEYS[4])
return {STATUS.OK, slug}
