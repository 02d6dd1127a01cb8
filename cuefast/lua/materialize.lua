--[[ materialize: turn due cues into executions — one per (cue, scheduled_for) — and advance next_run
  KEYS[1] due zset  KEYS[2] outbox stream  (every other key is derived from ARGV[2], the
  partition's key prefix "<pfx>:{pNN}:", so all keys share the partition's slot)
  ARGV[1] now µs  ARGV[2] partition key prefix  ARGV[3] the plan, one line per cue (one
  argument instead of thousands keeps the call cheap to encode), words separated by spaces:
  cue id, expected next_run (CAS: skipped if next_run moved), new next_run ("-" = none),
  number of slots k, then k pairs (scheduled_for µs, deterministic execution id)
  returns {executions created, cues skipped} ]]
--!include dirty
--!include work_index
local now = ARGV[1]
local pfx = ARGV[2]
local created, skipped = 0, 0
local due_rem = {}
local signal = {}  -- accounts that got claimable worker executions (one wake-up each)
local zadds = {}  -- key → {score, member, ...}: written with one ZADD per key and chunk

local function add(key, score, member)
  local t = zadds[key]
  if not t then t = {}; zadds[key] = t end
  t[#t + 1] = score
  t[#t + 1] = member
end

for line in string.gmatch(ARGV[3], '[^\n]+') do
  local cue_id, expected, new_nr, slots = string.match(line, '^(%S+) (%S+) (%S+) %d+ ?(.*)$')
  local ck = pfx .. 'cue:' .. cue_id
  local c = redis.call('HMGET', ck, 'status', 'nr', 'acct', 'tr', 'fc', 'pl')
  if not c[1] then
    due_rem[#due_rem + 1] = cue_id
    skipped = skipped + 1
  elseif c[1] ~= 'active' or c[2] ~= expected then
    skipped = skipped + 1
  else
    local acct, tr = c[3], c[4]
    local pl = c[6]  -- a payload over 64 B is in the config string: read when a slot is new
    local fired = 0
    local tk, ag = nil, nil
    for slot, eid in string.gmatch(slots, '(%S+) (%S+)') do
      local ek = pfx .. 'exec:' .. eid
      if redis.call('EXISTS', ek) == 0 then
        if not pl then
          local blob = redis.call('GET', ck .. ':cfg')  -- "<config JSON>\n<payload JSON>"
          pl = blob and string.sub(blob, string.find(blob, '\n', 1, true) + 1) or '{}'
        end
        -- absent fields mean their defaults: attempts 0, triggered_by scheduled, updated = created
        redis.call('HSET', ek, 'id', eid, 'cue', cue_id, 'acct', acct, 'tr', tr, 'sf', slot,
          'st', 'pending', 'ca', now, 'pl', pl)
        dirty(ek)
        redis.call('ZADD', ck .. ':execs', now, eid)
        add(pfx .. 'idx:' .. acct .. ':execs', now, eid)
        if tr == 'webhook' then
          redis.call('XADD', KEYS[2], '*', 'e', eid)
        else
          if tk == nil then tk, ag = task_agent(pl) end
          if tk ~= '' then redis.call('HSET', ek, 'tk', tk) end
          if ag ~= '' then redis.call('HSET', ek, 'ag', ag) end
          for _, wk in ipairs(work_keys(pfx, acct, tk, ag)) do add(wk, slot, eid) end
          add(pfx .. 'unclaimed', slot, eid)
          signal[acct] = true
        end
        fired = fired + 1
      end
    end
    created = created + fired
    dirty(ck)
    if new_nr == '-' then
      redis.call('HSET', ck, 'nr', '', 'fc', (tonumber(c[5]) or 0) + fired)
      due_rem[#due_rem + 1] = cue_id
    else
      redis.call('HSET', ck, 'nr', new_nr, 'fc', (tonumber(c[5]) or 0) + fired)
      add(KEYS[1], new_nr, cue_id)
    end
  end
end

local CHUNK = 1000  -- values per call, well inside Lua's unpack limit
for key, t in pairs(zadds) do
  for i = 1, #t, CHUNK do
    redis.call('ZADD', key, unpack(t, i, math.min(i + CHUNK - 1, #t)))
  end
end
for i = 1, #due_rem, CHUNK do
  redis.call('ZREM', KEYS[1], unpack(due_rem, i, math.min(i + CHUNK - 1, #due_rem)))
end
for acct, _ in pairs(signal) do work_signal(pfx, acct) end
return {created, skipped}
