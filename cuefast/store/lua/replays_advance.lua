--[[ replays_advance: a bulk-replay batch is done — move the job on (or finish it)
  KEYS[1] active: zset of running jobs
  KEYS[2] job: the job hash
  ARGV[1] now: µs
  ARGV[2] job_id
  ARGV[3] pos: where the batch started (a runner whose lease ran out and was overtaken finds
    the job moved on and changes nothing)
  ARGV[4] n: ids in the batch
  ARGV[5] replayed: of them
  ARGV[6] skipped: of them
  ARGV[7] next_at: µs the next batch may start
  ARGV[8] last_error: why the last skipped one was ("" = keep the one held)
  returns 1 moved on | 0 stale batch ]]
local f = redis.call('HMGET', KEYS[2], 'pos', 'selected')
if tonumber(f[1] or '-1') ~= tonumber(ARGV[3]) then return 0 end
local pos = redis.call('HINCRBY', KEYS[2], 'pos', ARGV[4])
redis.call('HINCRBY', KEYS[2], 'replayed', ARGV[5])
redis.call('HINCRBY', KEYS[2], 'skipped', ARGV[6])
if ARGV[8] ~= '' then redis.call('HSET', KEYS[2], 'err', ARGV[8]) end
if pos >= tonumber(f[2] or '0') then
  redis.call('HSET', KEYS[2], 'status', 'done', 'finished', ARGV[1])
  redis.call('ZREM', KEYS[1], ARGV[2])
else
  redis.call('ZADD', KEYS[1], ARGV[7], ARGV[2])
end
return 1
