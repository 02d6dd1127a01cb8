--[[ cues_create: write a new cue, its config string, its listing index and its due time
  KEYS[1] cue hash  KEYS[2] cue config string  KEYS[3] due zset  KEYS[4] account index of the
  cue's status
  ARGV[1] cue id  ARGV[2] created µs (index score)  ARGV[3] next run µs ("" = not scheduled)
  ARGV[4] the config string: "<config JSON>", or "<config JSON>\n<payload JSON>" when the
  payload is over 64 B (a shorter one is the hash field 'pl')  ARGV[5..] field, value pairs
  returns {1} | {-1} a cue with that id exists ]]
--!include dirty
if redis.call('EXISTS', KEYS[1]) == 1 then return {-1} end
local fields = {}
for i = 5, #ARGV do fields[#fields + 1] = ARGV[i] end
redis.call('HSET', KEYS[1], unpack(fields))
dirty(KEYS[1])
redis.call('SET', KEYS[2], ARGV[4])
redis.call('ZADD', KEYS[4], ARGV[2], ARGV[1])
if ARGV[3] ~= '' then redis.call('ZADD', KEYS[3], ARGV[3], ARGV[1]) end
return {1}
