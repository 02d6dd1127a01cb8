--[[ cues_delete: remove a cue, its config string, its due time and its index entries
  KEYS[1] cue hash  KEYS[2] cue config string  KEYS[3] due zset  KEYS[4..7] account index of
  status active, paused, completed, failed
  ARGV[1] account id  ARGV[2] cue id
  returns {1, name} | {-1} no such cue for that account ]]
--!include dirty
local vals = redis.call('HMGET', KEYS[1], 'acct', 'name')
if vals[1] ~= ARGV[1] then return {-1} end
redis.call('DEL', KEYS[1], KEYS[2])
dirty(KEYS[1])
redis.call('ZREM', KEYS[3], ARGV[2])
for i = 4, 7 do redis.call('ZREM', KEYS[i], ARGV[2]) end
return {1, vals[2]}
