--[[ executions_create: manual fires or replays of one cue — new executions, queued, each optionally
  idempotent, in order (one request's, or those of one account that arrived together:
  Executions.create)
  KEYS[1] cue: the cue hash (every execution hash and idempotency record is derived from its
    prefix: same slot)
  KEYS[2] outbox: stream
  KEYS[3] delayed: zset, execution id → send_at µs
  KEYS[4] work: the account's work zset (worker executions)
  ARGV[1] now: µs
  ARGV[2] account_id
  ARGV[3..] creates: 9 values per execution: its id; scheduled_for µs; payload JSON ("" = the
    cue's: its hash's pl, else the tail of its config string, else {}); triggered_by ("" and
    "scheduled", the default, are not stored); replayed_from (an execution id, "" = none); the
    idempotency key's digest (the record is "<prefix>idem:<cue id>:<digest>"); fingerprint
    of the idempotent request ("" = no idempotency key); response: JSON to remember for the key (with payload
    "": up to its payload member's value, which the script appends with the closing "}");
    ttl_ms of the idempotency record
  returns two values per execution: OK, payload (the cue's, with payload ""; else "") created
    | REPEAT, remembered response: same key and fingerprint (also of an earlier one of this call)
    | CONFLICT, existing execution id: same key, other fingerprint
    | NOT_FOUND, "": no such cue (of the account: checked before the idempotency key) ]]
--!include dirty
--!include work_index
--!include exec_index
local now_s, acct = ARGV[1], ARGV[2]
local now = tonumber(now_s)
local out = {}
local c = redis.call('HMGET', KEYS[1], 'acct', 'tr', 'pl')
if c[1] ~= acct then
  for _ = 3, #ARGV, 9 do out[#out + 1] = STATUS.NOT_FOUND; out[#out + 1] = '' end
  return out
end
local pfx, cue = string.match(KEYS[1], '^(.*)cue:(.*)$')
local tr, cue_payload = c[2], nil
for i = 3, #ARGV, 9 do
  local eid, sf_s, payload, tb, rf = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4]
  local digest, fingerprint = ARGV[i + 5], ARGV[i + 6]
  local ik = fingerprint ~= '' and pfx .. 'idem:' .. cue .. ':' .. digest or nil
  local held = ik and redis.call('GET', ik)
  if held then
    local fp, first, response = string.match(held, '^([^|]*)|([^|]*)|(.*)$')
    if fp == fingerprint then
      out[#out + 1] = STATUS.REPEAT; out[#out + 1] = response
    else
      out[#out + 1] = STATUS.CONFLICT; out[#out + 1] = first
    end
  else
    local own = payload == ''
    if own then  -- the cue's payload: in its hash when small, else after the config string's newline
      if not cue_payload then
        cue_payload = c[3]
        if not cue_payload then
          local blob = redis.call('GET', KEYS[1] .. ':cfg')
          local nl = blob and string.find(blob, '\n', 1, true)
          cue_payload = nl and string.sub(blob, nl + 1) or '{}'
        end
      end
      payload = cue_payload
    end
    local ek, sf = pfx .. 'exec:' .. eid, tonumber(sf_s)
    -- absent fields mean their defaults, as schedule_materialize.lua writes them: attempts 0,
    -- triggered_by scheduled (lib/one_time.lua), updated = created; the id is the key's (no field)
    redis.call('HSET', ek, 'cue', cue, 'acct', acct, 'tr', tr, 'sf', sf_s, 'st', 'pending', 'ca', now_s,
      'pl', payload)
    if tb ~= '' and tb ~= 'scheduled' then redis.call('HSET', ek, 'tb', tb) end
    dirty_at(pfx, 'exec:' .. eid)
    if rf ~= '' then redis.call('HSET', ek, 'rf', rf) end
    exec_reindex(pfx, eid)
    if tr == 'webhook' then
      if sf > now then
        redis.call('ZADD', KEYS[3], sf_s, eid)
      else
        redis.call('XADD', KEYS[2], '*', 'e', eid)
      end
    else
      -- worker: claimable from scheduled_for on (KEYS[4] is the account's work zset; the task/agent
      -- indexes and the unclaimed zset are its slot-mates, derived from the same prefix)
      local tk, ag = task_agent(payload)
      if tk ~= '' then redis.call('HSET', ek, 'tk', tk) end
      if ag ~= '' then redis.call('HSET', ek, 'ag', ag) end
      work_add(pfx, acct, eid, sf_s, tk, ag, sf_s)
      if sf <= now then work_signal(pfx, acct) end
    end
    if ik then
      local response = own and ARGV[i + 7] .. payload .. '}' or ARGV[i + 7]
      redis.call('SET', ik, fingerprint .. '|' .. eid .. '|' .. response, 'PX', tonumber(ARGV[i + 8]))
    end
    out[#out + 1] = STATUS.OK; out[#out + 1] = own and payload or ''
  end
end
return out
