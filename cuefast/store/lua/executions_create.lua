--[[ executions_create: a manual fire or a replay — one new execution, queued, optionally idempotent
  KEYS[1] new execution hash  KEYS[2] cue hash  KEYS[3] the cue's executions zset
  KEYS[4] account execution index  KEYS[5] outbox stream  KEYS[6] delayed zset
  KEYS[7] account work zset  KEYS[8] idempotency key ("" slot-mate when unused)
  ARGV[1] execution id  ARGV[2] account id  ARGV[3] scheduled_for µs  ARGV[4] payload JSON
  ARGV[5] triggered_by  ARGV[6] replayed_from ("" = none)  ARGV[7] idempotency fingerprint
  ("" = no key)  ARGV[8] response JSON to remember for the key  ARGV[9] idempotency ttl ms
  ARGV[10] now µs
  returns {1} created | {2, remembered response} same key and fingerprint
        | {-1, existing execution id} same key, other fingerprint | {-2} no such cue ]]
--!include dirty
--!include work_index
local now = tonumber(ARGV[10])
if ARGV[7] ~= '' then
  local held = redis.call('GET', KEYS[8])
  if held then
    local fp, eid, response = string.match(held, '^([^|]*)|([^|]*)|(.*)$')
    if fp == ARGV[7] then return {2, response} end
    return {-1, eid}
  end
end
local c = redis.call('HMGET', KEYS[2], 'acct', 'tr')
if c[1] ~= ARGV[2] then return {-2} end
local eid, tr, sf = ARGV[1], c[2], tonumber(ARGV[3])
redis.call('HSET', KEYS[1], 'id', eid, 'cue', string.match(KEYS[2], 'cue:(.*)$'), 'acct', ARGV[2], 'tr', tr,
  'sf', ARGV[3], 'st', 'pending', 'tb', ARGV[5], 'att', 0, 'ca', ARGV[10], 'ua', ARGV[10], 'pl', ARGV[4])
dirty(KEYS[1])
if ARGV[6] ~= '' then redis.call('HSET', KEYS[1], 'rf', ARGV[6]) end
redis.call('ZADD', KEYS[3], ARGV[10], eid)
redis.call('ZADD', KEYS[4], ARGV[10], eid)
if tr == 'webhook' then
  if sf > now then
    redis.call('ZADD', KEYS[6], ARGV[3], eid)
  else
    redis.call('XADD', KEYS[5], '*', 'e', eid)
  end
else
  -- worker: claimable from scheduled_for on (KEYS[7] is the account's work zset; the task/agent
  -- indexes and the unclaimed zset are its slot-mates, derived from the same prefix)
  local pfx = string.match(KEYS[1], '^(.*)exec:')
  local tk, ag = task_agent(ARGV[4])
  if tk ~= '' then redis.call('HSET', KEYS[1], 'tk', tk) end
  if ag ~= '' then redis.call('HSET', KEYS[1], 'ag', ag) end
  work_add(pfx, ARGV[2], eid, ARGV[3], tk, ag, ARGV[3])
  if sf <= now then work_signal(pfx, ARGV[2]) end
end
if ARGV[7] ~= '' then
  redis.call('SET', KEYS[8], ARGV[7] .. '|' .. eid .. '|' .. ARGV[8], 'PX', tonumber(ARGV[9]))
end
return {1}
