--[[ delivery_start: take a batch of webhook executions for one delivery attempt each (lease them;
  execution and cue keys are derived from ARGV[2], the partition's key prefix, so every key
  shares the partition's slot)
  KEYS[1] leases: zset, execution id → lease expiry µs (the expiry is the attempt's fencing token)
  ARGV[1] now: µs
  ARGV[2] prefix: the partition's key prefix "<pfx>:{pNN}:"
  ARGV[3] timeout_s: the default timeout (CUEFAST_WEBHOOK_TIMEOUT_SECONDS)
  ARGV[4] stale_s: the lease floor (CUEFAST_WEBHOOK_STALE_SECONDS)
  ARGV[5..] execution_ids
  Each attempt's timeout is its cue's delivery.timeout_seconds (30, the field's default, when
  `delivery` is set without it), else ARGV[3]; its lease is max(ARGV[4], timeout + 60) s
  (CONTRACT.md §11.4), so a slow receiver is never sent the same attempt again while its
  request may still be open.
  returns 13 values per execution, in order:
    {OK, cue id, scheduled_for, attempts, payload, cue's stored config JSON, cue name, account,
     triggered_by, cue's schedule summary (sch), lease expiry µs (the token delivery_finish,
     delivery_extend and delivery_release must present), timeout s, fire_at µs ("" = the
     scheduled_for: no jitter)}
    | {NOT_FOUND, …} not deliverable (gone, finished, not webhook): drop the stream entry
    | {BUSY, …} another attempt holds a live lease: leave the entry pending
    | {QUEUED, …} its cue's delivery.max_concurrency is reached: it stays pending on the cue's
      waiting list (lib/cue_cap.lua), and a freed permit gives it a fresh outbox entry: drop this
      one ]]
--!include dirty
--!include cue_cap
--!include one_time
--!include exec_index
local now, pfx = tonumber(ARGV[1]), ARGV[2]
local default_timeout, floor_s = tonumber(ARGV[3]), tonumber(ARGV[4])
local now_s = string.format('%.0f', now)
local WIDTH = 13
local out = {}
local marks = {}  -- snapshot dirty marks, written by dirty_flush at the end
-- a batch's listing moves (lib/exec_index.lua), one write per zset of the accounts' registries
-- at the end (each cue's, which gets one member, at once: ix_deferred): an execution moves at
-- most once here (a second entry of it finds its live lease: BUSY); a single one moves at once
local ixd = #ARGV > 5 and ix_deferred() or nil
-- the leases, one ZADD at the end (an execution leased earlier in this call is BUSY if listed
-- again: `leased`)
local leases, leased = {}, {}
local no = 0  -- values in `out` (a counter: `#t` is a search)
local function skip(code)
  out[no + 1] = code
  for j = 2, WIDTH do out[no + j] = '' end
  no = no + WIDTH
end
-- the attempt's timeout in s, from the stored config JSON (defaults are left out of it; a JSON
-- string value cannot contain the unescaped '"delivery":{', so only the key itself matches)
local function timeout_of(cfg)
  local d = string.find(cfg, '"delivery":{', 1, true)
  if not d then return default_timeout end
  return tonumber(string.match(cfg, '^"delivery":{[^}]-"timeout_seconds":(%d+)', d)) or 30
end
-- per stored config, its timeout, cap (false: none) and lease text, each found once (a batch's
-- cues share a few configs, and equal Lua strings are one object, so a table finds them)
local CFGS = {}
local function cfg_of(cfg)
  local c = CFGS[cfg]
  if not c then
    local timeout = timeout_of(cfg)
    c = {timeout, cap_of(cfg) or false,
      string.format('%.0f', now + math.max(floor_s, timeout + 60) * 1000000)}
    CFGS[cfg] = c
  end
  return c
end
for i = 5, #ARGV do
  local eid = ARGV[i]
  local ek = pfx .. 'exec:' .. eid
  local e = redis.call('HMGET', ek, 'st', 'tr', 'cue', 'sf', 'att', 'pl', 'acct', 'tb', 'sa', 'la', 'ft', 'cp',
    'ca', 'os', 'cla', 'cw', 'ix')
  local st = e[1]
  local code = STATUS.OK
  local recovered = false
  if not st or e[2] ~= 'webhook' then
    code = STATUS.NOT_FOUND
  elseif st == 'delivering' then
    local lease = not leased[eid] and redis.call('ZSCORE', KEYS[1], eid)
    if leased[eid] or (lease and tonumber(lease) > now) then code = STATUS.BUSY else recovered = true end
  elseif st ~= 'pending' and st ~= 'retry_ready' then
    code = STATUS.NOT_FOUND
  end
  local cfg, c, cap, cc = nil, nil, nil, nil
  if code == STATUS.OK then
    local ck = pfx .. 'cue:' .. e[3]
    cfg = redis.call('GET', ck .. ':cfg')  -- "<config JSON>" [+ "\n<payload JSON>"]
    if not cfg then
      code = STATUS.NOT_FOUND
    else
      local nl = string.find(cfg, '\n', 1, true)
      if nl then cfg = string.sub(cfg, 1, nl - 1) end
      c = redis.call('HMGET', ck, 'name', 'sch')
      cc = cfg_of(cfg)
      cap = cc[2] or nil
      -- a holder (granted, handed back, or taken over as stale) keeps its permit; a restored
      -- attempt in flight retakes one (the cap may be passed once); the others are judged
      if cap and not recovered and e[12] ~= '1' and not cap_admit(pfx, e[3], eid, cap, now, e[12]) then
        code = STATUS.QUEUED
      end
    end
  end
  if code ~= STATUS.OK then
    skip(code)
  else
    -- one write of the hash: the attempt's fields and, when its cells change, `ix` (ix_move)
    local w = {'st', 'delivering', 'la', now_s, 'ua', now_s}
    if recovered then
      local last = tonumber(e[10] or now)
      w[#w + 1] = 'em'
      w[#w + 1] = 'Recovered from stale delivering state after ' ..
        string.format('%d', math.floor((now - last) / 1000000)) .. 's'
    end
    if cap then w[#w + 1] = 'cp'; w[#w + 1] = '1' end
    if not e[9] then w[#w + 1] = 'sa'; w[#w + 1] = now_s end
    local new = ix_of('delivering', e[14], e[8], e[15], e[16])
    if ix_move(pfx, eid, e[7], e[3], e[13], e[15], e[17] or '', new, ixd) then
      w[#w + 1] = 'ix'; w[#w + 1] = new
    end
    redis.call('HSET', ek, unpack(w))
    dirty_at(pfx, 'exec:' .. eid, marks)
    local timeout, lease = cc[1], cc[3]
    leases[#leases + 1] = lease
    leases[#leases + 1] = eid
    leased[eid] = true
    if cap then redis.call('ZADD', pfx .. 'cap:' .. e[3], lease, eid) end  -- the permit, checked after it
    out[no + 1], out[no + 2], out[no + 3], out[no + 4], out[no + 5], out[no + 6], out[no + 7] =
      STATUS.OK, e[3], e[4], e[5] or '0', e[6], cfg, c[1]
    out[no + 8], out[no + 9], out[no + 10], out[no + 11], out[no + 12], out[no + 13] =
      e[7], triggered_by(e[8]), c[2], lease, timeout, e[11] or ''
    no = no + WIDTH
  end
end
for i = 1, #leases, 1000 do
  redis.call('ZADD', KEYS[1], unpack(leases, i, math.min(i + 999, #leases)))
end
if ixd then ix_flush(ixd) end
dirty_flush(marks)
return out
