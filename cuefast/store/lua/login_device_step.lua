--[[ login_device_step: move a device code from one status to the next (§16.1), fields set with it
  KEYS[1] device: the device code's hash
  ARGV[1] now: µs
  ARGV[2] from: the status the code must be in
  ARGV[3] to: its new status
  ARGV[4] tok: "" = any; else the code's ``tok`` (SHA-256 of its magic-link token) must equal it
  ARGV[5..] fields: field, value pairs to set ("" value: the field is deleted)
  returns {OK} | {NOT_FOUND} no such code | {WRONG_STATE, status} expired ("expired") or in
    another status | {CONFLICT} another magic-link token ]]
local now = tonumber(ARGV[1])
local held = redis.call('HMGET', KEYS[1], 'st', 'exp', 'tok')
if not held[1] then return {STATUS.NOT_FOUND} end
if tonumber(held[2]) <= now and held[1] ~= 'claimed' then return {STATUS.WRONG_STATE, 'expired'} end
if held[1] ~= ARGV[2] then return {STATUS.WRONG_STATE, held[1]} end
if ARGV[4] ~= '' and held[3] ~= ARGV[4] then return {STATUS.CONFLICT} end
redis.call('HSET', KEYS[1], 'st', ARGV[3])
for i = 5, #ARGV, 2 do
  if ARGV[i + 1] == '' then
    redis.call('HDEL', KEYS[1], ARGV[i])
  else
    redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
  end
end
return {STATUS.OK}
