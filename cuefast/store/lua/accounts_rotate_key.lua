--[[ accounts_rotate_key: replace an account's API key, on the account's shard (first step: the
  old key stops working here — the account's key_sha is what authentication trusts; its map
  entry and rotated marker are the old key's shard's: accounts_retire_key)
  KEYS[1] api_keys: hash, API-key sha256 → account id (the account's shard: the new key's)
  KEYS[2] account: the account hash
  ARGV[1] now: µs
  ARGV[2] old_sha: the key the caller authenticated with
  ARGV[3] new_sha
  ARGV[4] new_prefix: the new key's display prefix
  ARGV[5] new_enc: the new key, encrypted ("" = none)
  ARGV[6] account_id
  returns {OK} | {CONFLICT} the old key is no longer current (a concurrent rotation) ]]
--!include dirty
if redis.call('HGET', KEYS[2], 'key_sha') ~= ARGV[2] then return {STATUS.CONFLICT} end
redis.call('HSET', KEYS[1], ARGV[3], ARGV[6])
redis.call('HSET', KEYS[2], 'key_sha', ARGV[3], 'key_prefix', ARGV[4], 'key_enc', ARGV[5],
  'updated', ARGV[1])
dirty(KEYS[2])
return {STATUS.OK}
