--[[ accounts_authenticate: resolve an API key hash to its account and count the request in its rate-limit
  window, in one round trip (CONTRACT.md §3.4, §3.7)
  KEYS[1] api-key hash (sha → account id)  KEYS[2] rotated-key marker of this sha
  KEYS[3] window of this key  KEYS[4] window of the client IP   (all on the auth slot)
  ARGV[1] key sha256 hex ("" = the request has no API key)
  ARGV[2] account key prefix (same slot: "<pfx>:{auth}:acct:")  ARGV[3] per-IP limit
  ARGV[4] this month "YYYY-MM" (usage mirror field "ex:<month>" in the account hash)
  ARGV[5] 1 = count the request, 0 = authenticate only (read-only)  ARGV[6] now µs
  A window is a list of request times (µs), oldest first, at most `limit` long: a request is
  in it while its time > now - 60 s. A valid key counts against its own window with the
  account's rate_limit; everything else (no key, unknown or rotated key) against the IP's.
  A rejected request is not counted.
  returns {auth, verdict, count, limit, oldest µs, warn, field, value, ...}
    auth    1 account (fields follow) | 0 no key | -1 unknown key | -2 rotated key (24 h)
    verdict 1 counted | 0 over the limit (not counted) | -1 not counting (ARGV[5] = 0)
    count   requests in the window (including this one when counted)
    warn    1 when executions this month >= 80 % of monthly_execution_limit ]]
local WINDOW = 60000000
local sha, counting, now = ARGV[1], ARGV[5] == '1', tonumber(ARGV[6])

local function window(key, limit)
  local n = redis.call('LLEN', key)
  local cutoff = now - WINDOW
  local oldest = n > 0 and tonumber(redis.call('LINDEX', key, 0)) or nil
  if oldest and oldest <= cutoff then
    -- times are sorted: find the first index still in the window (galloping, then bisection)
    local lo, hi, step = 0, n, 1
    oldest = nil
    while step < n do
      local v = tonumber(redis.call('LINDEX', key, step))
      if v > cutoff then hi, oldest = step, v; break end
      lo = step
      step = step * 2 + 1
    end
    while hi - lo > 1 do  -- index lo is out; index hi is in (its time: oldest) or hi == n
      local mid = math.floor((lo + hi) / 2)
      local v = tonumber(redis.call('LINDEX', key, mid))
      if v > cutoff then hi, oldest = mid, v else lo = mid end
    end
    redis.call('LTRIM', key, hi, -1)
    n = n - hi
  end
  if n >= limit then return {0, n, limit, oldest or now} end
  local t, text = now, ARGV[6]
  if n > 0 then  -- keep the list sorted when API processes' clocks differ slightly
    local last = redis.call('LINDEX', key, -1)
    if tonumber(last) > t then t, text = tonumber(last), last end
  end
  redis.call('RPUSH', key, text)
  redis.call('PEXPIRE', key, 61000)
  return {1, n + 1, limit, oldest or t}
end

local auth, acct = 0, nil
if sha ~= '' then
  local id = redis.call('HGET', KEYS[1], sha)
  if not id then
    auth = redis.call('EXISTS', KEYS[2]) == 1 and -2 or -1
  else
    acct = redis.call('HGETALL', ARGV[2] .. id)
    auth = #acct > 0 and 1 or -1
  end
end

local out
if auth == 1 then
  local f = {}
  for i = 1, #acct, 2 do f[acct[i]] = acct[i + 1] end
  local used = tonumber(f['ex:' .. ARGV[4]] or '0')
  local warn = used * 5 >= tonumber(f['exec_limit'] or '0') * 4 and 1 or 0
  local limit = tonumber(f['rate_limit'] or '0')
  out = counting and window(KEYS[3], limit) or {-1, 0, limit, now}
  out = {1, out[1], out[2], out[3], out[4], warn}
  for i = 1, #acct do out[i + 6] = acct[i] end
else
  local limit = tonumber(ARGV[3])
  out = counting and window(KEYS[4], limit) or {-1, 0, limit, now}
  out = {auth, out[1], out[2], out[3], out[4], 0}
end
return out
