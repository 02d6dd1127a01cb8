--[[ accounts_create: the first step of a registration, on the new account's auth shard: its key
  map entry, its hash (no slug yet) and its empty cue-partition bitmap. Nobody holds the key until
  the registration answers, so the account is unreachable until then; a registration whose e-mail
  is taken deletes it again (Accounts.register).
  KEYS[1] api_keys: hash, API-key sha256 → account id (the shard's; the key was drawn for it)
  KEYS[2] account: the new account's hash
  KEYS[3] cue_partitions: its cue-partition bitmap, created empty (tracked from the start)
  ARGV[1] account_id
  ARGV[2] key_sha: sha256 hex of the API key
  ARGV[3..] fields: field, value pairs of the account hash
  returns {OK} | {EXISTS} the id is taken ]]
if redis.call('EXISTS', KEYS[2]) == 1 then return {STATUS.EXISTS} end
redis.call('HSET', KEYS[1], ARGV[2], ARGV[1])
redis.call('HSET', KEYS[2], unpack(ARGV, 3))
redis.call('SET', KEYS[3], '')
return {STATUS.OK}
