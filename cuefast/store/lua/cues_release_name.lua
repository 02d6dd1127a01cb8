--[[ cues_release_name: free a cue name if (and only if) it still belongs to that cue
  KEYS[1] names: the account's cue-names hash
  ARGV[1] name
  ARGV[2] cue_id
  returns OK released | NOT_FOUND not held by that cue ]]
local cur = redis.call('HGET', KEYS[1], ARGV[1])
if cur and string.sub(cur, 1, #ARGV[2] + 1) == ARGV[2] .. ':' then
  redis.call('HDEL', KEYS[1], ARGV[1])
  return STATUS.OK
end
return STATUS.NOT_FOUND
