--[[ accounts_retire_key: the second step of a rotation, on the old key's shard: drop its map
  entry (when it still names the account) and mark it rotated for a while
  KEYS[1] api_keys: hash, API-key sha256 → account id (the old key's shard)
  KEYS[2] rotated: the rotated-key marker of the old sha
  ARGV[1] old_sha
  ARGV[2] account_id
  ARGV[3] ttl_ms: how long the old key answers key_rotated
  returns {OK} ]]
if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then redis.call('HDEL', KEYS[1], ARGV[1]) end
redis.call('SET', KEYS[2], ARGV[2], 'PX', tonumber(ARGV[3]))
return {STATUS.OK}
