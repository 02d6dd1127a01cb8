--[[ delivery_rate: may more webhook attempts go to a callback host now, under their cues'
  delivery.max_per_second (the account's slot: one window per (account, host), shared by every
  dispatcher; attempts are spaced evenly, one per interval — a GCRA without burst; one call for
  all of a batch's attempts to this host, judged in order)
  KEYS[1] window: string, the µs the host's next attempt may be sent at (absent: at once)
  ARGV[1] now: µs
  ARGV[2..] intervals_us: per attempt, 1,000,000 / its cue's max_per_second
  returns per attempt two values: 1, µs the next one may go (allowed: the window moved on one
    interval from now) | 0, µs this one may go (refused: not before then, nothing written) ]]
local now = tonumber(ARGV[1])
local at = tonumber(redis.call('GET', KEYS[1]) or '0')
local out = {}
for i = 2, #ARGV do
  local interval = tonumber(ARGV[i])
  if at > now then
    out[#out + 1] = 0
    out[#out + 1] = string.format('%.0f', at)
  else
    at = now + interval
    redis.call('SET', KEYS[1], string.format('%.0f', at), 'PX', math.ceil(interval / 1000) + 60000)
    out[#out + 1] = 1
    out[#out + 1] = string.format('%.0f', at)
  end
end
return out
