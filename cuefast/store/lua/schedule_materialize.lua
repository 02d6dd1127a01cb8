--[[ schedule_materialize: turn due cues into executions — one per (cue, scheduled_for) — and
  advance next_run, then read the next batch of due cues (one call per batch of a pass: the read
  of batch n+1 rides on the call that materialises batch n; every key but KEYS is derived from
  ARGV[2], the partition's key prefix "<pfx>:{pNN}:", so all keys share the partition's slot)
  KEYS[1] due: zset, cue id → next run µs
  KEYS[2] outbox: stream
  ARGV[1] now: µs
  ARGV[2] prefix: the partition's key prefix
  ARGV[3] members: the listing index member of every slot in the plan, in plan order: the
    execution id's 16 bytes (lib/exec_index.lua ix_member), concatenated ("" = spell them here,
    ~2 µs more per execution)
  ARGV[4] read: after the plan, return up to this many due cues ("0" = none)
  ARGV[5..] plan: per cue, one argument per word (Redis hands them over as Lua strings: parsing
    one long string with Lua patterns cost more than the rest of a cue's bookkeeping): cue id,
    expected next_run and expected schedule summary 'sch' (CAS: skipped if next_run moved or a
    PATCH changed the schedule, so a plan always follows the schedule it was computed from),
    new next_run ("-" = none), number of slots k — followed by "b" when the account is past
    its monthly execution limit's grace period (CONTRACT.md §13.2), and/or by "j" when the cue
    has jitter — then k pairs (scheduled_for µs, deterministic execution id), triples with "j"
    (… , fire_at µs).
  Jitter ("j"): the execution records 'ft' = fire_at; one whose fire_at is still ahead waits
  like a send_at fire — a webhook one in the partition's delayed zset (schedule_move_delayed.lua
  queues it then), a worker one in the work indexes and unclaimed zset scored by fire_at (not
  claimable before).
  A blocked ("b") cue's new executions are created directly as failed ("Monthly execution limit
  reached"): indexed, but no outbox entry, no work index, no alert; its next_run still advances
  and a one-time cue becomes failed. A cue left without a next run ("-": a one-time cue) gets
  'fa' = its last slot: "this slot has fired", which PATCH and cues_update.lua check (the
  execution itself may since have been trimmed from Redis by retention).
  A cue with an overlap policy ('ov', lib/overlap.lua): while the execution its 'rx' names is not
  final, a new slot under "skip" is created as skipped (indexed, never queued); each slot the cue
  releases to run becomes its 'rx', so of several slots in one pass only the first can run.
  Under "buffer_one" the first such slot is created pending but not queued, as the cue's 'bw'
  (released by the script that makes the running one final: lib/overlap.lua ov_settled), and
  a slot due while one waits is skipped. Under "cancel_previous" the running one is cancelled (lib/overlap.lua ov_cancel) and the slot
  runs; of several slots in one pass only the last runs, the earlier ones are created cancelled.
  A one-time cue whose slot is held back so becomes failed (its slot never runs).
  returns {executions created, cues skipped, {account id, blocked executions, ... per account},
    {cue id, next run µs, schedule summary ("" if the cue is gone), account id ("" if gone), ...
    per due cue read}, {account id, execution id, ... per claimed worker execution cancel_previous
    cancelled (the scheduler gives its task cap's permit back)}} — schedule summary = the cue's
    "sch" field, "<type>|<timezone>|<catch_up>|<at>|<cron>"; the account lets the scheduler check
    the monthly execution limit ]]
--!include dirty
--!include work_index
--!include set_cue_status
--!include exec_index
--!include overlap
local call, sub, argv = redis.call, string.sub, ARGV  -- (locals: a global is a table lookup)
local now = ARGV[1]
local pfx = ARGV[2]
local members = ARGV[3]
local exec_pfx, cue_pfx = pfx .. 'exec:', pfx .. 'cue:'
local created, skipped = 0, 0
local blocked = {}  -- account → executions created blocked
local ended = {}  -- account, execution id: claims cancel_previous ended
local BLOCKED = 'Monthly execution limit reached'
local due_rem = {}
local signal = {}  -- accounts that got claimable worker executions (one wake-up each)
local zadds = {}  -- key → {score, member, ...}: written with one ZADD per key and chunk
local marks = {}  -- snapshot dirty marks, written by dirty_flush at the end
local dirt = dirty_batch(pfx, marks)  -- this slot's marks
local counts = {}  -- listing index counts (lib/exec_index.lua), written by exec_index_flush

local function add(key, score, member)
  local t = zadds[key]
  if not t then t = {}; zadds[key] = t end
  t[#t + 1] = score
  t[#t + 1] = member
end

-- read the plan first: the execution keys of all its slots are checked with one EXISTS per
-- 1,000 (almost always none exists: then no slot needs its own EXISTS below)
local CHUNK = 1000  -- values per call, well inside Lua's unpack limit
local l_cue, l_exp, l_sch, l_new, l_block, l_first, l_last = {}, {}, {}, {}, {}, {}, {}
local s_slot, s_eid, s_ek = {}, {}, {}
local s_fire = {}  -- jitter: slot index → fire_at µs (only slots of cues with jitter)
local a, nargs = 5, #argv
local nc, ns = 0, 0  -- cues and slots read so far (counters: `#t` is a search)
-- the usual slot counts as numbers (a table lookup; tonumber is ~1.4k instructions, two strtod)
local COUNTS = {['1'] = 1, ['2'] = 2, ['3'] = 3, ['4'] = 4, ['0'] = 0}
while a <= nargs do
  local count, block = argv[a + 4], ''
  local k = COUNTS[count] or tonumber(count)
  -- jitter: flag "j", a third word per slot (its fire_at)
  local width = 2
  if not k then
    local digits, flags = string.match(count, '^(%d+)(%a+)$')
    k = tonumber(digits)
    if string.find(flags, 'b', 1, true) then block = 'b' end
    if string.find(flags, 'j', 1, true) then width = 3 end
  end
  nc = nc + 1
  l_cue[nc], l_exp[nc], l_sch[nc], l_new[nc], l_block[nc], l_first[nc] =
    argv[a], argv[a + 1], argv[a + 2], argv[a + 3], block, ns + 1
  a = a + 5
  for _ = 1, k do
    local eid = argv[a + 1]
    ns = ns + 1
    s_slot[ns], s_eid[ns], s_ek[ns] = argv[a], eid, exec_pfx .. eid
    if width == 3 then s_fire[ns] = argv[a + 2] end
    a = a + width
  end
  l_last[nc] = ns
end
local any_exists = false  -- else only a slot repeated within this plan can find its execution
local made = {}  -- execution keys created by this call
for i = 1, ns, CHUNK do
  if call('EXISTS', unpack(s_ek, i, math.min(i + CHUNK - 1, ns))) > 0 then any_exists = true end
end

for i = 1, nc do
  local cue_id, new_nr, block = l_cue[i], l_new[i], l_block[i]
  local ck = cue_pfx .. cue_id
  -- (the overlap fields 'rx' and 'bw' are read only for a cue with a policy: an absent field
  -- costs a scan of the whole hash)
  local c = call('HMGET', ck, 'status', 'nr', 'acct', 'tr', 'fc', 'pl', 'sch', 'ov')
  if not c[1] then
    due_rem[#due_rem + 1] = cue_id
    skipped = skipped + 1
  elseif c[1] ~= 'active' then  -- only an active cue has a due entry: drop a stray one
    due_rem[#due_rem + 1] = cue_id
    skipped = skipped + 1
  elseif c[2] ~= l_exp[i] or c[7] ~= l_sch[i] then  -- moved, or its schedule PATCHed, since the plan
    skipped = skipped + 1
  else
    local acct, tr = c[3], c[4]
    local pl = c[6]  -- a payload over 64 B is in the config string: read when a slot is new
    local fired = 0
    local tk, ag = nil, nil
    local last = nil
    local ov = block ~= 'b' and c[8] ~= 'allow' and c[8]  -- a policy (a blocked slot is final at once)
    if ov then
      local o = call('HMGET', ck, 'rx', 'bw')
      c[9], c[10] = o[1], o[2]
    end
    local busy, rx = ov and ov_running(pfx, c[9]), nil
    -- buffer_one: an execution already waiting ('bw', still pending) takes the one place
    local waiting = ov == 'buffer_one' and c[10] and call('HGET', exec_pfx .. c[10], 'st') == 'pending'
    local held = false  -- the last new slot was not released to run (a one-time cue then fails)
    local once = l_first[i] == l_last[i]  -- one slot: its cue registry entries written at once
    for j = l_first[i], l_last[i] do
      local slot, eid, ek = s_slot[j], s_eid[j], s_ek[j]
      last = slot
      if not made[ek] and (not any_exists or call('EXISTS', ek) == 0) then
        made[ek] = true
        local m = nil  -- the slot's index member, when the scheduler sent them
        if members ~= '' then m = sub(members, j * 16 - 15, j * 16) end
        if not pl then
          local blob = call('GET', ck .. ':cfg')  -- "<config JSON>\n<payload JSON>"
          pl = blob and string.sub(blob, string.find(blob, '\n', 1, true) + 1) or '{}'
        end
        dirt[#dirt + 1] = 'exec:' .. eid
        local mode = 'run'
        if ov == 'skip' then
          if busy then mode = 'skip' end
        elseif ov == 'buffer_one' then
          if busy then mode = waiting and 'skip' or 'wait' end
        elseif ov == 'cancel_previous' then
          if j < l_last[i] then
            mode = 'cancel'  -- a later slot of this pass supersedes it at once
          elseif busy and rx == nil then
            if ov_cancel(pfx, c[9], now, dirt) == 'claim' then
              ended[#ended + 1] = acct  -- its task cap's permit: given back by the scheduler
              ended[#ended + 1] = c[9]
            end
          end
        end
        if mode == 'skip' or mode == 'cancel' then
          local st, em = 'skipped', OV_SKIPPED
          if mode == 'cancel' then
            st, em = 'cancelled', OV_SUPERSEDED
          elseif ov == 'buffer_one' then
            em = OV_SKIPPED_WAITING
          end
          local ix = exec_index_new(pfx, eid, acct, cue_id, now, st, '', zadds, counts, m, once)
          call('HSET', ek, 'cue', cue_id, 'acct', acct, 'tr', tr, 'sf', slot,
            'st', st, 'ca', now, 'ua', now, 'em', em, 'pl', pl, 'ix', ix)
        elseif block == 'b' then
          local ix = exec_index_new(pfx, eid, acct, cue_id, now, 'failed', '', zadds, counts, m, once)
          call('HSET', ek, 'cue', cue_id, 'acct', acct, 'tr', tr, 'sf', slot,
            'st', 'failed', 'ca', now, 'ua', now, 'em', BLOCKED, 'pl', pl, 'ix', ix)
          blocked[acct] = (blocked[acct] or 0) + 1
        else
          -- absent fields mean their defaults: attempts 0, triggered_by scheduled (lib/one_time.lua),
          -- updated = created
          local ix = exec_index_new(pfx, eid, acct, cue_id, now, 'pending', '', zadds, counts, m, once)
          call('HSET', ek, 'cue', cue_id, 'acct', acct, 'tr', tr, 'sf', slot,
            'st', 'pending', 'ca', now, 'pl', pl, 'ix', ix)
        end
        if ov and mode == 'run' then busy, rx = true, eid end
        if mode == 'wait' then
          waiting = true
          call('HSET', ck, 'bw', eid)
        end
        held = mode == 'skip' or mode == 'cancel'
        -- jitter: record fire_at; available from then on (the slot's score becomes fire_at)
        local avail = slot
        local fire = s_fire[j]
        if fire then
          call('HSET', ek, 'ft', fire)
          avail = fire
        end
        if block == 'b' or mode ~= 'run' then
          -- blocked or held back: nothing to deliver or claim
        elseif tr == 'webhook' then
          if fire and tonumber(fire) > tonumber(now) then
            add(pfx .. 'delayed', fire, eid)  -- jitter: queued by schedule_move_delayed.lua at fire_at
          else
            call('XADD', KEYS[2], '*', 'e', eid)
          end
        else
          if tk == nil then tk, ag = task_agent(pl) end
          if tk ~= '' then call('HSET', ek, 'tk', tk) end
          if ag ~= '' then call('HSET', ek, 'ag', ag) end
          for _, wk in ipairs(work_keys(pfx, acct, tk, ag)) do add(wk, avail, eid) end
          add(pfx .. 'unclaimed', avail, eid)
          signal[acct] = true
        end
        fired = fired + 1
      end
    end
    created = created + fired
    local fc = string.format('%d', (tonumber(c[5]) or 0) + fired)  -- not "%.14g" (slower)
    dirt[#dirt + 1] = 'cue:' .. cue_id
    if rx then call('HSET', ck, 'rx', rx) end
    if new_nr == '-' then
      call('HSET', ck, 'nr', '', 'fc', fc)
      if last then call('HSET', ck, 'fa', last) end
      due_rem[#due_rem + 1] = cue_id
    else
      call('HSET', ck, 'nr', new_nr, 'fc', fc)
      add(KEYS[1], new_nr, cue_id)
    end
    if held and new_nr == '-' then set_cue_status(pfx, cue_id, acct, 'failed') end
    if block == 'b' and fired > 0 then
      call('HSET', ck, 'lr', now)
      if new_nr == '-' then set_cue_status(pfx, cue_id, acct, 'failed') end
    end
  end
end

for key, t in pairs(zadds) do
  for i = 1, #t, CHUNK do
    call('ZADD', key, unpack(t, i, math.min(i + CHUNK - 1, #t)))
  end
end
for i = 1, #due_rem, CHUNK do
  call('ZREM', KEYS[1], unpack(due_rem, i, math.min(i + CHUNK - 1, #due_rem)))
end
exec_index_flush(counts)
dirty_flush(marks)
for acct, _ in pairs(signal) do work_signal(pfx, acct) end
local bl = {}
for acct, n in pairs(blocked) do bl[#bl + 1] = acct; bl[#bl + 1] = n end
local rows = {}
if ARGV[4] ~= '0' then
  local head = call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'WITHSCORES', 'LIMIT', 0, ARGV[4])
  for i = 1, #head, 2 do
    local c = call('HMGET', cue_pfx .. head[i], 'sch', 'acct')
    rows[#rows + 1] = head[i]
    rows[#rows + 1] = head[i + 1]
    rows[#rows + 1] = c[1] or ''
    rows[#rows + 1] = c[2] or ''
  end
end
return {created, skipped, bl, rows, ended}
