--[[ delivery_rate: may one more webhook attempt go to a callback host now, under a cue's
  delivery.max_per_second (the account's slot: one window per (account, host), shared by every
  dispatcher; attempts are spaced evenly, one per interval — a GCRA without burst)
  KEYS[1] window: string, the µs the host's next attempt may be sent at (absent: at once)
  ARGV[1] now: µs
  ARGV[2] interval_us: 1,000,000 / the attempt's cue's max_per_second
  returns {1, µs the next one may go} allowed: the window moved on one interval from now
    | {0, µs this one may go} refused: not before then (nothing written) ]]
local now, interval = tonumber(ARGV[1]), tonumber(ARGV[2])
local at = tonumber(redis.call('GET', KEYS[1]) or '0')
if at > now then return {0, string.format('%.0f', at)} end
local nxt = string.format('%.0f', now + interval)
redis.call('SET', KEYS[1], nxt, 'PX', math.ceil(interval / 1000) + 60000)
return {1, nxt}
