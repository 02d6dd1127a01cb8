--[[ cue_fail_pause: on_failure pause — active recurring cues become paused (no next run)
  KEYS[1] due zset  (cue hashes and status indexes derived from ARGV[1], the partition's key prefix)
  ARGV[1] partition key prefix  ARGV[2..] cue ids
  returns the number paused (cues gone or not active are left alone) ]]
--!include dirty
--!include set_cue_status
local pfx = ARGV[1]
local paused = 0
for i = 2, #ARGV do
  local ck = pfx .. 'cue:' .. ARGV[i]
  local c = redis.call('HMGET', ck, 'status', 'acct')
  if c[1] == 'active' then
    set_cue_status(pfx, ARGV[i], c[2], 'paused')
    paused = paused + 1
  end
end
return paused
