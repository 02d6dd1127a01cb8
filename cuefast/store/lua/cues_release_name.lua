--[[ cues_release_name: free a cue name if (and only if) it still belongs to that cue
  KEYS[1] the account's cue-names hash   ARGV[1] name  ARGV[2] cue id
  returns 1 released | 0 not held by that cue ]]
local cur = redis.call('HGET', KEYS[1], ARGV[1])
if cur and string.sub(cur, 1, #ARGV[2] + 1) == ARGV[2] .. ':' then
  redis.call('HDEL', KEYS[1], ARGV[1])
  return 1
end
return 0
