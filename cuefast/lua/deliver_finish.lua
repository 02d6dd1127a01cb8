--[[ deliver_finish: record one delivery attempt's result, atomically with the next state
  KEYS[1] execution hash  KEYS[2] leases zset  KEYS[3] retry zset  KEYS[4] outbox stream
  ARGV[1] execution id  ARGV[2] result: "ok" | "fail"  ARGV[3] http status ("" = none)
  ARGV[4] error message ("" = none)  ARGV[5] next retry µs ("" = no attempts left)
  ARGV[6] outcome deadline µs ("" = not armed)  ARGV[7] stream entry id ("" = none)
  ARGV[8] partition key prefix  ARGV[9] 1 if this execution decides a one-time cue, else 0
  ARGV[10] now µs  ARGV[11] 1 if a final failure pauses the (recurring) cue (on_failure.pause)
  returns {1, new status} | {0} the execution was not in flight (deleted or already recorded) ]]
local now = ARGV[10]
local pfx = ARGV[8]
local function done()
  redis.call('ZREM', KEYS[2], ARGV[1])
  if ARGV[7] ~= '' then
    redis.call('XACK', KEYS[4], 'dispatchers', ARGV[7])
    redis.call('XDEL', KEYS[4], ARGV[7])
  end
end
local e = redis.call('HMGET', KEYS[1], 'st', 'cue', 'acct', 'oc')
if e[1] ~= 'delivering' then
  done()
  return {0}
end
local ck = pfx .. 'cue:' .. e[2]
local function set_cue_status(status)
  local cur = redis.call('HGET', ck, 'status')
  if not cur or cur == status then return end
  local score = redis.call('HGET', ck, 'ca')
  redis.call('ZREM', pfx .. 'idx:' .. e[3] .. ':cues:' .. cur, e[2])
  redis.call('ZADD', pfx .. 'idx:' .. e[3] .. ':cues:' .. status, score, e[2])
  redis.call('HSET', ck, 'status', status, 'nr', '')
  redis.call('ZREM', pfx .. 'due', e[2])
end
redis.call('HINCRBY', KEYS[1], 'att', 1)
redis.call('HSET', KEYS[1], 'hs', ARGV[3], 'ua', now)
if redis.call('EXISTS', ck) == 1 then redis.call('HINCRBY', ck, 'rc', 1) end
local status
if ARGV[2] == 'ok' then
  redis.call('HSET', KEYS[1], 'da', now, 'em', '')
  if ARGV[6] ~= '' and not e[4] then
    status = 'pending_outcome'
    redis.call('HSET', KEYS[1], 'od', ARGV[6])
  else
    status = 'success'
    if redis.call('EXISTS', ck) == 1 then redis.call('HSET', ck, 'lr', now) end
    if ARGV[9] == '1' then set_cue_status('completed') end
  end
else
  redis.call('HSET', KEYS[1], 'em', ARGV[4])
  if ARGV[5] ~= '' then
    status = 'retrying'
    redis.call('HSET', KEYS[1], 'nxr', ARGV[5])
    redis.call('ZADD', KEYS[3], ARGV[5], ARGV[1])
  else
    status = 'failed'
    if redis.call('EXISTS', ck) == 1 then redis.call('HSET', ck, 'lr', now) end
    if ARGV[9] == '1' then set_cue_status('failed') end
    if ARGV[11] == '1' then set_cue_status('paused') end
  end
end
redis.call('HSET', KEYS[1], 'st', status)
done()
return {1, status}
