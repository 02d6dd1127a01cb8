--[[ schedule_expire_deadlines: executions whose outcome deadline passed without an outcome →
  outcome_timeout
  KEYS[1] deadlines: zset, execution id → outcome deadline µs
  ARGV[1] now: µs
  ARGV[2] prefix: the partition's key prefix
  ARGV[3] batch: size
  The deadline's length (in the message and the alert) is from what armed it — the 2xx
  (`da`) or the claim (`cla`) — to the deadline; a worker execution re-offered after its
  lease expired no longer has its claim time, so its length is read from the cue's config.
  A re-offered worker execution that times out leaves the claimable indexes.
  returns {number timed out, execution id, …} ]]
--!include dirty
--!include work_index
--!include set_cue_status
--!include one_time
--!include alert
--!include exec_index
--!include overlap
local now, pfx = ARGV[1], ARGV[2]
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[3]))
local terminal = {success = true, failed = true, missed = true, outcome_timeout = true, skipped = true,
  cancelled = true}
local out = {0}
local function num(v) if v and v ~= '' then return tonumber(v) end end
local function deadline_seconds(e)
  local start = num(e[4]) or num(e[5])
  if start then return math.floor((tonumber(e[3]) - start) / 1000000 + 0.5) end
  local raw = redis.call('GET', pfx .. 'cue:' .. (e[6] or '') .. ':cfg')
  if raw then
    local ok, cfg = pcall(cjson.decode, string.match(raw, '^[^\n]*'))
    if ok and type(cfg) == 'table' and type(cfg.delivery) == 'table' then
      local secs = cfg.delivery.outcome_deadline_seconds
      if type(secs) == 'number' then return secs end
    end
  end
  return 300  -- the default deadline (models.Delivery)
end
for _, eid in ipairs(ids) do
  redis.call('ZREM', KEYS[1], eid)
  local ek = pfx .. 'exec:' .. eid
  local e = redis.call('HMGET', ek, 'st', 'oc', 'od', 'da', 'cla', 'cue', 'acct', 'tb', 'tr', 'tk', 'ag')
  if e[1] and not terminal[e[1]] and (not e[2] or e[2] == '') then
    local secs = deadline_seconds(e)
    if e[9] == 'worker' then work_rem(pfx, e[7], eid, e[10], e[11]) end
    redis.call('HSET', ek, 'st', 'outcome_timeout', 'ua', now,
      'em', 'Outcome not reported within ' .. string.format('%d', secs) .. 's')
    out[1] = out[1] + 1
    alert_verdict(pfx, eid, e[6], e[7], false, now)  -- alerts (§12.4)
    alert_raise(pfx, e[7], e[6], eid, 'outcome_timeout', 'Execution ' .. eid .. ' did not report an outcome within '
      .. string.format('%d', secs) .. ' seconds.', string.format('{"outcome_deadline_seconds":%d,"transport":"%s"}',
      secs, e[9] or 'webhook'), now)
    dirty(ek)
    exec_reindex(pfx, eid)
    out[#out + 1] = eid
    -- a one-time cue decided by its scheduled execution becomes failed
    if decides_cue(pfx, e[6], e[8]) then set_cue_status(pfx, e[6], e[7], 'failed') end
    if e[6] then ov_settled(pfx, e[6], now) end  -- buffer_one: release the one waiting behind it
  end
end
return out
