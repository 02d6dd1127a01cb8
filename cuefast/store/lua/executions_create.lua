--[[ executions_create: a manual fire or a replay — one new execution, queued, optionally idempotent
  KEYS[1] execution: the new execution's hash
  KEYS[2] cue: the cue hash
  KEYS[3] outbox: stream
  KEYS[4] delayed: zset, execution id → send_at µs
  KEYS[5] work: the account's work zset (worker executions)
  KEYS[6] idempotency: the idempotency record (a slot-mate when unused)
  ARGV[1] now: µs
  ARGV[2] execution_id
  ARGV[3] account_id
  ARGV[4] scheduled_for: µs
  ARGV[5] payload: JSON ("" = the cue's: its hash's pl, else the tail of its config string, else {})
  ARGV[6] triggered_by: "" and "scheduled" (the default) are not stored
  ARGV[7] replayed_from: an execution id ("" = none)
  ARGV[8] fingerprint: of the idempotent request ("" = no idempotency key)
  ARGV[9] response: JSON to remember for the key (with ARGV[5] "": up to its payload member's
    value, which the script appends with the closing "}")
  ARGV[10] ttl_ms: of the idempotency record
  returns {OK, payload} created (payload: the cue's, with ARGV[5] "") | {OK} created
    | {REPEAT, remembered response} same key and fingerprint
    | {CONFLICT, existing execution id} same key, other fingerprint
    | {NOT_FOUND} no such cue (of the account: checked before the idempotency key) ]]
--!include dirty
--!include work_index
--!include exec_index
local now_s, eid, acct, sf_s, payload, tb = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6]
local now, sf, fingerprint = tonumber(now_s), tonumber(sf_s), ARGV[8]
local c = redis.call('HMGET', KEYS[2], 'acct', 'tr', 'pl')
if c[1] ~= acct then return {STATUS.NOT_FOUND} end
if fingerprint ~= '' then
  local held = redis.call('GET', KEYS[6])
  if held then
    local fp, first, response = string.match(held, '^([^|]*)|([^|]*)|(.*)$')
    if fp == fingerprint then return {STATUS.REPEAT, response} end
    return {STATUS.CONFLICT, first}
  end
end
local tr, own = c[2], payload == ''
if own then  -- the cue's payload: in its hash when small, else after the config string's newline
  payload = c[3]
  if not payload then
    local blob = redis.call('GET', KEYS[2] .. ':cfg')
    local nl = blob and string.find(blob, '\n', 1, true)
    payload = nl and string.sub(blob, nl + 1) or '{}'
  end
end
-- absent fields mean their defaults, as schedule_materialize.lua writes them: attempts 0,
-- triggered_by scheduled (lib/one_time.lua), updated = created; the id is the key's (no field)
redis.call('HSET', KEYS[1], 'cue', string.match(KEYS[2], 'cue:(.*)$'), 'acct', acct, 'tr', tr,
  'sf', sf_s, 'st', 'pending', 'ca', now_s, 'pl', payload)
if tb ~= '' and tb ~= 'scheduled' then redis.call('HSET', KEYS[1], 'tb', tb) end
dirty(KEYS[1])
if ARGV[7] ~= '' then redis.call('HSET', KEYS[1], 'rf', ARGV[7]) end
local pfx = string.match(KEYS[1], '^(.*)exec:')
exec_reindex(pfx, eid)
if tr == 'webhook' then
  if sf > now then
    redis.call('ZADD', KEYS[4], sf_s, eid)
  else
    redis.call('XADD', KEYS[3], '*', 'e', eid)
  end
else
  -- worker: claimable from scheduled_for on (KEYS[5] is the account's work zset; the task/agent
  -- indexes and the unclaimed zset are its slot-mates, derived from the same prefix)
  local tk, ag = task_agent(payload)
  if tk ~= '' then redis.call('HSET', KEYS[1], 'tk', tk) end
  if ag ~= '' then redis.call('HSET', KEYS[1], 'ag', ag) end
  work_add(pfx, acct, eid, sf_s, tk, ag, sf_s)
  if sf <= now then work_signal(pfx, acct) end
end
if fingerprint ~= '' then
  local response = own and ARGV[9] .. payload .. '}' or ARGV[9]
  redis.call('SET', KEYS[6], fingerprint .. '|' .. eid .. '|' .. response, 'PX', tonumber(ARGV[10]))
end
if own then return {STATUS.OK, payload} end
return {STATUS.OK}
