--[[ accounts_authenticate: resolve an API key hash to its account and count the request in its
  rate-limit window, in one round trip (CONTRACT.md §3.4, §3.7). All keys are on one auth shard:
  the key's (``Keys.key_shard``), which is its account's for every key issued since the shards.
  KEYS[1] api_keys: hash, API-key sha256 → account id (this shard's keys)
  KEYS[2] rotated: the rotated-key marker of this sha
  KEYS[3] key_window: the rate-limit window of this key (in its account's shard)
  KEYS[4] ip_window: the rate-limit window of the client IP (used only when ARGV[9] = 1)
  ARGV[1] now: µs
  ARGV[2] key_sha: sha256 hex of the API key ("" = the request has no API key)
  ARGV[3] account_prefix: "<pfx>:{aNN}:acct:" (account hashes of this shard)
  ARGV[4] ip_limit: requests per minute of one client IP
  ARGV[5] month: "YYYY-MM" (the usage mirror field "ex:<month>" in the account hash)
  ARGV[6] count: n >= 1 = count n requests of this key and IP (one, or a batch that arrived
    together: Accounts.authenticate), in order, as long as the window has room; 0 = authenticate
    only (read-only)
  ARGV[7] partitions_prefix: "<pfx>:{aNN}:cparts:" (cue-partition bitmaps of this shard)
  ARGV[8] account_id: "" = look the key up in KEYS[1]; else the key's account, already looked up
    in the key's shard (the second step for a key older than the shards)
  ARGV[9] ip_here: 1 = KEYS[4] is on this shard (count a request without a valid key here)
  ARGV[10] names_prefix: "<pfx>:{aNN}:names:" (cue-names hashes of this shard)
  ARGV[11..] reservations: creates' cue names, 5 values per create of the batch: i (its place,
    1..n, ascending), name, cue_id (the cue id to reserve it for), account (the account that
    cue id was drawn for, a hint: nothing is reserved unless the key resolves to it), limit (1 =
    with the account's cue_limit as the limit hint, 0 = without). Request i's name is reserved
    once it is authenticated and counted, in the account's cue-names hash as
    cues_reserve_name.lua does, in order: two creates of one batch asking one name are answered
    as two calls would be
  A window is a list of request times (µs), oldest first, at most `limit` long: a request is
  in it while its time > now - 60 s (a batch's requests all take its time). A valid key counts
  against its own window with the account's rate_limit; everything else (no key, unknown or
  rotated key) against the IP's.
  A rejected request is not counted. The account's ``key_sha`` is the truth: a map entry of
  another key (a rotation that stopped between its steps) answers ROTATED.
  returns {status, verdict, count, limit, oldest µs, warn, partitions, {reserved...},
    {holder...}, field, value, ...}
    status  OK (the account's fields follow) | NO_KEY | NOT_FOUND unknown key | ROTATED (24 h) |
            ELSEWHERE: the map names an account not on this shard, its id in "partitions"
    verdict k >= 1: the first k of the n requests counted (the others over the limit) | 0 over
            the limit (none counted) | -1 not counting (ARGV[6] = 0) | -2 to count in the IP's
            shard (ARGV[9] = 0)
    count   requests in the window (including the k counted)
    warn    1 when executions this month >= 80 % of monthly_execution_limit
    partitions  the account's cue-partition bitmap in hex (bit 0 is the first byte's high bit);
            "*" = any partition (no bitmap)
    reserved  per reservation asked (ARGV[11..]), in order: 0 nothing reserved | OK | EXISTS
            (holder: the name's value) | COUNT (lib/reserve_name); holder: those values ('' none)
  ]]
--!include reserve_name
local WINDOW = 60000000
-- constant arguments are strings: Redis 7.0 spells a Lua number given to redis.call with
-- snprintf("%.17g"), ~2.2k instructions a call (callgrind; 7.2 has a faster conversion)
local now, sha, asked = tonumber(ARGV[1]), ARGV[2], tonumber(ARGV[6])
local counting = asked > 0

local function window(key, limit)
  local n = redis.call('LLEN', key)
  local cutoff = now - WINDOW
  local oldest = n > 0 and tonumber(redis.call('LINDEX', key, '0')) or nil
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
    redis.call('LTRIM', key, hi, '-1')
    n = n - hi
  end
  if n >= limit then return {0, n, limit, oldest or now} end
  local t, text = now, ARGV[1]
  if n > 0 then  -- keep the list sorted when API processes' clocks differ slightly
    local last = redis.call('LINDEX', key, '-1')
    if tonumber(last) > t then t, text = tonumber(last), last end
  end
  local k = math.min(asked, limit - n)
  if k == 1 then
    redis.call('RPUSH', key, text)
  else
    local times = {}
    for i = 1, k do times[i] = text end
    redis.call('RPUSH', key, unpack(times))
  end
  redis.call('PEXPIRE', key, '61000')
  return {k, n + k, limit, oldest or t}
end

-- the account's cue-partition bitmap in hex (Python decodes and caches it: spelling the
-- partition numbers here cost up to ~90 µs per request at 128 partitions), '*' without one
local function cue_partitions(key)
  local bits = redis.call('GET', key)
  if not bits then return '*' end
  return string.format(string.rep('%02x', #bits), string.byte(bits, 1, -1))
end

local auth, acct, acct_id = STATUS.NO_KEY, nil, nil
if sha ~= '' then
  local id = ARGV[8] ~= '' and ARGV[8] or redis.call('HGET', KEYS[1], sha)
  if not id then
    auth = redis.call('EXISTS', KEYS[2]) == 1 and STATUS.ROTATED or STATUS.NOT_FOUND
  else
    acct, acct_id = redis.call('HGETALL', ARGV[3] .. id), id
    if #acct == 0 then
      if ARGV[8] == '' then return {STATUS.ELSEWHERE, -1, 0, 0, now, 0, id} end
      auth = STATUS.NOT_FOUND
    else
      auth = STATUS.OK
    end
  end
end

local out
if auth == STATUS.OK then
  local f = {}
  for i = 1, #acct, 2 do f[acct[i]] = acct[i + 1] end
  if f['key_sha'] ~= sha then auth = STATUS.ROTATED end
  if auth == STATUS.OK then
    local used = tonumber(f['ex:' .. ARGV[5]] or '0')
    local warn = used * 5 >= tonumber(f['exec_limit'] or '0') * 4 and 1 or 0
    local limit = tonumber(f['rate_limit'] or '0')
    out = counting and window(KEYS[3], limit) or {-1, 0, limit, now}
    local made, holders, counted = {}, {}, out[1]
    for j = 11, #ARGV, 5 do
      local r, h = 0, ''
      if tonumber(ARGV[j]) <= counted and ARGV[j + 3] == acct_id then
        local hint = ARGV[j + 4] == '1' and tonumber(f['cue_limit'] or '0') or -1
        local got = reserve_name(ARGV[10] .. acct_id, now, ARGV[j + 1], ARGV[j + 2], hint, '')
        r, h = got[1], got[2] or ''
      end
      made[#made + 1], holders[#holders + 1] = r, h
    end
    out = {STATUS.OK, out[1], out[2], out[3], out[4], warn, cue_partitions(ARGV[7] .. acct_id),
      made, holders}
    for i = 1, #acct do out[i + 9] = acct[i] end
    return out
  end
end
local limit = tonumber(ARGV[4])
if not counting then
  out = {-1, 0, limit, now}
elseif ARGV[9] == '1' then
  out = window(KEYS[4], limit)
else
  out = {-2, 0, limit, now}
end
return {auth, out[1], out[2], out[3], out[4], 0}
