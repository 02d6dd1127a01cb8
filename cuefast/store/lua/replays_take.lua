--[[ replays_take: lease a running bulk-replay job's next batch (one runner at a time)
  KEYS[1] active: zset of running jobs → µs their next batch may start (or the lease ends)
  KEYS[2] job: the job hash
  KEYS[3] ids: the job's source ids
  ARGV[1] now: µs
  ARGV[2] job_id
  ARGV[3] lease_us: how long the batch is the caller's (then another runner may take it again)
  returns {} not due (or not running) | {pos, account id, id…}: the batch from position pos ]]
local due = redis.call('ZSCORE', KEYS[1], ARGV[2])
if not due or tonumber(due) > tonumber(ARGV[1]) then return {} end
local f = redis.call('HMGET', KEYS[2], 'pos', 'rate', 'acct')
local pos, rate = tonumber(f[1] or '0'), tonumber(f[2] or '1')
redis.call('ZADD', KEYS[1], tonumber(ARGV[1]) + tonumber(ARGV[3]), ARGV[2])
local out = {pos, f[3] or ''}
local ids = redis.call('LRANGE', KEYS[3], pos, pos + rate - 1)
for i = 1, #ids do out[#out + 1] = ids[i] end
return out
