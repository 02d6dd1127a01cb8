--[[ cues_create: write a new cue, its config string, its listing index and its due time
  KEYS[1] cue: the cue hash
  KEYS[2] config: the cue's config string
  KEYS[3] due: zset, cue id → next run µs
  KEYS[4] index: the account's index of the cue's status
  ARGV[1] now: µs, the cue's created time (its index score)
  ARGV[2] cue_id
  ARGV[3] next_run: µs ("" = not scheduled)
  ARGV[4] config: "<config JSON>", or "<config JSON>\n<payload JSON>" when the payload is over
    64 B (a shorter one is the hash field 'pl')
  ARGV[5..] fields: field, value pairs of the hash
  returns {OK} | {EXISTS} a cue with that id exists ]]
--!include dirty
if redis.call('EXISTS', KEYS[1]) == 1 then return {STATUS.EXISTS} end
local fields = {}
for i = 5, #ARGV do fields[#fields + 1] = ARGV[i] end
redis.call('HSET', KEYS[1], unpack(fields))
dirty(KEYS[1])
redis.call('SET', KEYS[2], ARGV[4])
redis.call('ZADD', KEYS[4], ARGV[1], ARGV[2])
if ARGV[3] ~= '' then redis.call('ZADD', KEYS[3], ARGV[3], ARGV[2]) end
return {STATUS.OK}
