--[[ replays_create: a bulk-replay job with its selected source executions, in one step
  KEYS[1] idem: the job's Idempotency-Key record (a slot-mate when unused)
  KEYS[2] job: the job hash
  KEYS[3] ids: the job's source ids list
  KEYS[4] active: zset of running jobs → µs their next batch may start
  ARGV[1] now: µs
  ARGV[2] job_id
  ARGV[3] fingerprint: of the request ("" = no Idempotency-Key)
  ARGV[4] ttl_ms: of the idempotency record
  ARGV[5] fields: how many field, value pairs follow
  ARGV[6..] fields_then_ids: the job's field, value pairs, then the source ids
  returns {OK, job id} | {REPEAT, job id} same key and request | {CONFLICT, job id} same key,
    another request ]]
local fingerprint = ARGV[3]
if fingerprint ~= '' then
  local held = redis.call('GET', KEYS[1])
  if held then
    local fp, job = string.match(held, '^([^|]*)|(.*)$')
    if fp == fingerprint then return {STATUS.REPEAT, job} end
    return {STATUS.CONFLICT, job}
  end
end
local nf = tonumber(ARGV[5])
local fields = {}
for i = 6, 5 + 2 * nf do fields[#fields + 1] = ARGV[i] end
redis.call('HSET', KEYS[2], unpack(fields))
local first = 6 + 2 * nf
if #ARGV >= first then
  for i = first, #ARGV, 1000 do
    redis.call('RPUSH', KEYS[3], unpack(ARGV, i, math.min(i + 999, #ARGV)))
  end
  redis.call('ZADD', KEYS[4], ARGV[1], ARGV[2])
end
if fingerprint ~= '' then
  redis.call('SET', KEYS[1], fingerprint .. '|' .. ARGV[2], 'PX', ARGV[4])
end
return {STATUS.OK, ARGV[2]}
