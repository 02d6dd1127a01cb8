--[[ accounts_rotate_key: replace an account's API key; the old one answers key_rotated for a while
  KEYS[1] api_keys: hash, API-key sha256 → account id
  KEYS[2] account: the account hash
  KEYS[3] rotated: the rotated-key marker of the old sha
  ARGV[1] now: µs
  ARGV[2] old_sha: the key the caller authenticated with
  ARGV[3] new_sha
  ARGV[4] new_prefix: the new key's display prefix
  ARGV[5] new_enc: the new key, encrypted ("" = none)
  ARGV[6] ttl_ms: how long the old key answers key_rotated
  ARGV[7] account_id
  returns {OK} | {CONFLICT} the old key is no longer current (a concurrent rotation) ]]
--!include dirty
if redis.call('HGET', KEYS[2], 'key_sha') ~= ARGV[2] then return {STATUS.CONFLICT} end
redis.call('HDEL', KEYS[1], ARGV[2])
redis.call('HSET', KEYS[1], ARGV[3], ARGV[7])
redis.call('SET', KEYS[3], ARGV[7], 'PX', tonumber(ARGV[6]))
redis.call('HSET', KEYS[2], 'key_sha', ARGV[3], 'key_prefix', ARGV[4], 'key_enc', ARGV[5],
  'updated', ARGV[1])
dirty(KEYS[2])
return {STATUS.OK}
