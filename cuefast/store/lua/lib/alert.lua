-- alert: alerts and failure verdicts (CONTRACT.md §12.4), written in the script that records the
-- event. Keys, all in the execution's partition slot `pfx`:
--   alert:<id> hash (acct, cue, eid, type, msg, md = metadata JSON, ca = created µs)
--   idx:<acct>:alerts and idx:<acct>:alerts:<type> zsets (alert id → created µs)
--   notices stream (k = "a" alert | "f" on_failure e-mail | "w" on_failure webhook | "v" an
--   outcome's verification checks (lib/record_outcome.lua), i = alert / execution id, n = attempt,
--   t = event µs for "f" / "w")
--   the cue hash's fs (failure streak) and fsa ("1" = streak already alerted); the execution
--   hash's vd ("1" = verdict counted).
-- The alert id is a name-based UUID of (type, execution id): one alert per (type, execution)
-- at most — the contract's dedup (user and cue are the execution's).
-- the cue's stored config JSON (docs/DESIGN.md "Why a cue is two keys": the string beside the
-- cue hash, "<config JSON>" or "<config JSON>\n<payload JSON>"; defaults are left out), or nil
--!include dirty
--!include set_cue_status
local function alert_cue_config(pfx, cue)
  local blob = redis.call('GET', pfx .. 'cue:' .. cue .. ':cfg')
  if not blob then return nil end
  local nl = string.find(blob, '\n', 1, true)
  return nl and string.sub(blob, 1, nl - 1) or blob
end

local function alert_raise(pfx, acct, cue, eid, atype, msg, md, now)
  local h = redis.sha1hex(atype .. '|' .. eid)
  local v = tonumber(string.sub(h, 17, 17), 16) % 4 + 1
  local var = string.sub('89ab', v, v)
  local id = string.sub(h, 1, 8) .. '-' .. string.sub(h, 9, 12) .. '-5' .. string.sub(h, 14, 16) .. '-' ..
    var .. string.sub(h, 18, 20) .. '-' .. string.sub(h, 21, 32)
  local ak = pfx .. 'alert:' .. id
  if redis.call('EXISTS', ak) == 1 then return end
  redis.call('HSET', ak, 'acct', acct, 'cue', cue, 'eid', eid, 'type', atype, 'msg', msg, 'md', md, 'ca', now)
  dirty(ak)  -- snapshotted (needs lib dirty included first)
  redis.call('ZADD', pfx .. 'idx:' .. acct .. ':alerts', now, id)
  redis.call('ZADD', pfx .. 'idx:' .. acct .. ':alerts:' .. atype, now, id)
  redis.call('XADD', pfx .. 'notices', '*', 'k', 'a', 'i', id, 'n', '1')
end

-- a failed verdict of a cue with config `cfg`: its streak grows; reaching the cue's
-- alerts.consecutive_failures (default 3) raises one alert
local function alert_streak(pfx, eid, cue, acct, cfg, now)
  local ck = pfx .. 'cue:' .. cue
  local n = redis.call('HINCRBY', ck, 'fs', 1)
  local limit = tonumber(string.match(cfg, '"consecutive_failures":(%d+)')) or 3
  if n >= limit and redis.call('HGET', ck, 'fsa') ~= '1' then
    redis.call('HSET', ck, 'fsa', '1')
    alert_raise(pfx, acct, cue, eid, 'consecutive_failures',
      'Cue ' .. cue .. ' has ' .. n .. ' consecutive failed executions.',
      '{"consecutive_failures":' .. n .. '}', now)
  end
end

-- the execution's verdict (first one only): a failure adds to its cue's streak, a success resets it
-- (lib/record_outcome.lua does the same with the fields it already read)
local function alert_verdict(pfx, eid, cue, acct, success, now)
  if redis.call('HSETNX', pfx .. 'exec:' .. eid, 'vd', '1') == 0 then return end
  local ck = pfx .. 'cue:' .. cue
  local cfg = alert_cue_config(pfx, cue)
  if not cfg then return end
  dirty(pfx .. 'exec:' .. eid)
  dirty(ck)
  if success then
    redis.call('HSET', ck, 'fs', 0, 'fsa', '')
    return
  end
  alert_streak(pfx, eid, cue, acct, cfg, now)
end

-- a final failure (§12.1: attempts exhausted, lease exhausted, missed): its verdict, and the
-- cue's on_failure in the same script, so a crash cannot lose it: `pause` (a recurring cue that
-- is active becomes paused, no next run), the `webhook` and `email` notices on the partition's
-- notices stream (k = "w" / "f", i = execution id, t = failed at µs), sent by cuefast.engine.notices.
-- (needs set_cue_status included first)
local function alert_final_failure(pfx, eid, cue, acct, now)
  alert_verdict(pfx, eid, cue, acct, false, now)
  local cfg = alert_cue_config(pfx, cue)
  if not cfg then return end
  local ok, c = pcall(cjson.decode, cfg)
  local of = ok and type(c) == 'table' and c.on_failure
  if type(of) ~= 'table' then of = {} end  -- a stored config leaves defaults out
  if of.pause == true then
    local ck = pfx .. 'cue:' .. cue
    local cur = redis.call('HMGET', ck, 'status', 'sch')
    if cur[1] == 'active' and string.sub(cur[2] or '', 1, 10) == 'recurring|' then
      set_cue_status(pfx, cue, acct, 'paused')
    end
  end
  if type(of.webhook) == 'string' and of.webhook ~= '' then
    redis.call('XADD', pfx .. 'notices', '*', 'k', 'w', 'i', eid, 'n', '1', 't', now)
  end
  if of.email ~= false then  -- on_failure.email defaults to true
    redis.call('XADD', pfx .. 'notices', '*', 'k', 'f', 'i', eid, 'n', '1', 't', now)
  end
end

-- an outcome that reported success but failed verification: its alert
local function alert_verification_failed(pfx, eid, cue, acct, tr, now)
  alert_raise(pfx, acct, cue, eid, 'verification_failed',
    'Execution ' .. eid .. ' reported success but failed verification (required evidence missing).',
    '{"outcome_state":"verification_failed","transport":"' .. (tr or 'webhook') .. '"}', now)
end
