--[[ materialize: turn due cues into executions — one per (cue, scheduled_for) — and advance next_run
  KEYS[1] due zset  KEYS[2] outbox stream  (every other key is derived from ARGV[2], the
  partition's key prefix "<pfx>:{pNN}:", so all keys share the partition's slot)
  ARGV[1] now µs  ARGV[2] partition key prefix  ARGV[3] number of cues, then per cue:
  cue id, expected next_run (CAS: skipped if next_run moved), new next_run ("" = none),
  number of slots k, then k pairs (scheduled_for µs, deterministic execution id)
  returns {executions created, cues skipped} ]]
local now = ARGV[1]
local pfx = ARGV[2]
local n = tonumber(ARGV[3])
local created, skipped = 0, 0
local i = 4
for _ = 1, n do
  local cue_id, expected, new_nr, k = ARGV[i], ARGV[i + 1], ARGV[i + 2], tonumber(ARGV[i + 3])
  local slots_at = i + 4
  i = slots_at + 2 * k
  local ck = pfx .. 'cue:' .. cue_id
  local c = redis.call('HMGET', ck, 'status', 'nr', 'acct', 'tr', 'pl')
  if not c[1] then
    redis.call('ZREM', KEYS[1], cue_id)
    skipped = skipped + 1
  elseif c[1] ~= 'active' or c[2] ~= expected then
    skipped = skipped + 1
  else
    local acct, tr = c[3], c[4]
    for j = 0, k - 1 do
      local slot, eid = ARGV[slots_at + 2 * j], ARGV[slots_at + 2 * j + 1]
      local ek = pfx .. 'exec:' .. eid
      if redis.call('EXISTS', ek) == 0 then
        redis.call('HSET', ek, 'id', eid, 'cue', cue_id, 'acct', acct, 'tr', tr, 'sf', slot,
          'st', 'pending', 'tb', 'scheduled', 'att', 0, 'ca', now, 'ua', now, 'pl', c[5])
        redis.call('ZADD', pfx .. 'cue:' .. cue_id .. ':execs', now, eid)
        redis.call('ZADD', pfx .. 'idx:' .. acct .. ':execs', now, eid)
        if tr == 'webhook' then
          redis.call('XADD', KEYS[2], '*', 'e', eid)
        else
          redis.call('ZADD', pfx .. 'work:' .. acct, slot, eid)
        end
        redis.call('HINCRBY', ck, 'fc', 1)
        created = created + 1
      end
    end
    redis.call('HSET', ck, 'nr', new_nr)
    if new_nr == '' then
      redis.call('ZREM', KEYS[1], cue_id)
    else
      redis.call('ZADD', KEYS[1], new_nr, cue_id)
    end
  end
end
return {created, skipped}
