--[[ accounts_rotate_key: replace an account's API key; the old one answers key_rotated for a while
  KEYS[1] api-key hash  KEYS[2] account hash  KEYS[3] rotated-key marker of the old sha
  ARGV[1] old sha (the key the caller authenticated with)  ARGV[2] new sha  ARGV[3] new prefix
  ARGV[4] new encrypted key ("" = none)  ARGV[5] marker ttl ms  ARGV[6] account id  ARGV[7] now µs
  returns {1} | {-1} the old key is no longer current (a concurrent rotation) ]]
--!include dirty
if redis.call('HGET', KEYS[2], 'key_sha') ~= ARGV[1] then return {-1} end
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('HSET', KEYS[1], ARGV[2], ARGV[6])
redis.call('SET', KEYS[3], ARGV[6], 'PX', tonumber(ARGV[5]))
redis.call('HSET', KEYS[2], 'key_sha', ARGV[2], 'key_prefix', ARGV[3], 'key_enc', ARGV[4],
  'updated', ARGV[7])
dirty(KEYS[2])
return {1}
