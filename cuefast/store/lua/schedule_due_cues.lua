--[[ schedule_due_cues: a batch of due cues with what the scheduler needs to plan them, in one call
  KEYS[1] due: zset, cue id → next run µs
  ARGV[1] now: µs
  ARGV[2] batch: size
  ARGV[3] prefix: the partition's key prefix
  returns {cue id, next run µs, schedule summary ("" if the cue is gone), account id ("" if
    gone), ...}  (schedule summary = the cue's "sch" field: "<type>|<timezone>|<catch_up>|<at>|<cron>";
    the account lets the scheduler check the monthly execution limit, CONTRACT.md §13.2) ]]
local rows = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'WITHSCORES', 'LIMIT', 0, tonumber(ARGV[2]))
local out = {}
for i = 1, #rows, 2 do
  local c = redis.call('HMGET', ARGV[3] .. 'cue:' .. rows[i], 'sch', 'acct')
  out[#out + 1] = rows[i]
  out[#out + 1] = rows[i + 1]
  out[#out + 1] = c[1] or ''
  out[#out + 1] = c[2] or ''
end
return out
