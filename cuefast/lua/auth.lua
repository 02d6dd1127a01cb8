--[[ auth: resolve an API key hash to its account, in one round trip
  KEYS[1] api-key hash (sha → account id)   KEYS[2] rotated-key marker of this sha
  ARGV[1] key sha256 hex   ARGV[2] account key prefix (same slot: "<pfx>:{auth}:acct:")
  returns {1, field, value, ...} | {-1} unknown key | {-2} rotated key (24 h) ]]
local id = redis.call('HGET', KEYS[1], ARGV[1])
if not id then
  if redis.call('EXISTS', KEYS[2]) == 1 then return {-2} end
  return {-1}
end
local acct = redis.call('HGETALL', ARGV[2] .. id)
if #acct == 0 then return {-1} end
local out = {1}
for i = 1, #acct do out[i + 1] = acct[i] end
return out
