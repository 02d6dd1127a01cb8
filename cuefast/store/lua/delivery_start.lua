--[[ delivery_start: take a batch of webhook executions for one delivery attempt each (lease them)
  KEYS[1] leases zset (execution id → lease expiry µs; the expiry is the attempt's fencing token)
  (execution and cue keys are derived from ARGV[3], the partition's key prefix, so every key
  shares the partition's slot)
  ARGV[1] default timeout s (CUEFAST_WEBHOOK_TIMEOUT_SECONDS)  ARGV[2] stale floor s
  (CUEFAST_WEBHOOK_STALE_SECONDS)  ARGV[3] partition key prefix "<pfx>:{pNN}:"  ARGV[4] now µs
  ARGV[5..] execution ids
  Each attempt's timeout is its cue's delivery.timeout_seconds (30, the field's default, when
  `delivery` is set without it), else ARGV[1]; its lease is max(ARGV[2], timeout + 60) s
  (CONTRACT.md §11.4), so a slow receiver is never sent the same attempt again while its
  request may still be open.
  returns 12 values per execution, in order:
    {1, cue id, scheduled_for, attempts, payload, cue's stored config JSON, cue name, account,
     triggered_by, cue's schedule summary (sch), lease expiry µs (the token deliver_finish,
     deliver_extend and deliver_release must present), timeout s}
  | {0, …} not deliverable (gone, finished, not webhook): drop the stream entry
  | {-1, …} another attempt holds a live lease: leave the entry pending ]]
--!include dirty
--!include one_time
local default_timeout, floor_s = tonumber(ARGV[1]), tonumber(ARGV[2])
local pfx, now = ARGV[3], tonumber(ARGV[4])
local now_s = string.format('%.0f', now)
local WIDTH = 12
local out = {}
local marks = {}  -- snapshot dirty marks, written by dirty_flush at the end
local function skip(code)
  for _ = 1, WIDTH do out[#out + 1] = '' end
  out[#out - WIDTH + 1] = code
end
-- the attempt's timeout in s, from the stored config JSON (defaults are left out of it; a JSON
-- string value cannot contain the unescaped '"delivery":{', so only the key itself matches)
local function timeout_of(cfg)
  local d = string.find(cfg, '"delivery":{', 1, true)
  if not d then return default_timeout end
  return tonumber(string.match(cfg, '^"delivery":{[^}]-"timeout_seconds":(%d+)', d)) or 30
end
for i = 5, #ARGV do
  local eid = ARGV[i]
  local ek = pfx .. 'exec:' .. eid
  local e = redis.call('HMGET', ek, 'st', 'tr', 'cue', 'sf', 'att', 'pl', 'acct', 'tb', 'sa', 'la')
  local st = e[1]
  local code = 1
  local recovered = false
  if not st or e[2] ~= 'webhook' then
    code = 0
  elseif st == 'delivering' then
    local lease = redis.call('ZSCORE', KEYS[1], eid)
    if lease and tonumber(lease) > now then code = -1 else recovered = true end
  elseif st ~= 'pending' and st ~= 'retry_ready' then
    code = 0
  end
  local cfg, c = nil, nil
  if code == 1 then
    local ck = pfx .. 'cue:' .. e[3]
    cfg = redis.call('GET', ck .. ':cfg')  -- "<config JSON>" [+ "\n<payload JSON>"]
    if not cfg then
      code = 0
    else
      local nl = string.find(cfg, '\n', 1, true)
      if nl then cfg = string.sub(cfg, 1, nl - 1) end
      c = redis.call('HMGET', ck, 'name', 'sch')
    end
  end
  if code ~= 1 then
    skip(code)
  else
    if recovered then
      local last = tonumber(e[10] or now)
      redis.call('HSET', ek, 'em', 'Recovered from stale delivering state after ' ..
        string.format('%d', math.floor((now - last) / 1000000)) .. 's')
    end
    redis.call('HSET', ek, 'st', 'delivering', 'la', now_s, 'ua', now_s)
    dirty_at(pfx, 'exec:' .. eid, marks)
    if not e[9] then redis.call('HSET', ek, 'sa', now_s) end
    local timeout = timeout_of(cfg)
    local lease = string.format('%.0f', now + math.max(floor_s, timeout + 60) * 1000000)
    redis.call('ZADD', KEYS[1], lease, eid)
    local row = {1, e[3], e[4], e[5] or '0', e[6], cfg, c[1], e[7], triggered_by(e[8]), c[2], lease,
      timeout}
    for _, v in ipairs(row) do out[#out + 1] = v end
  end
end
dirty_flush(marks)
return out
