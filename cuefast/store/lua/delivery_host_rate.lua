--[[ delivery_host_rate: send slots of an (account, callback host) rate cap for a batch of
  attempts about to be sent (delivery.max_per_second; the account's slot, shared by every
  dispatcher; one call for all of a batch's attempts to this host, judged in order). Slots are
  spaced evenly, one per interval (a GCRA without burst), and handed out in the order attempts
  ask: an attempt that cannot go now is booked the next free slot, and keeps it when it asks
  again (from any dispatcher: after a wait in memory, a hand-back or a crash), so a cap that binds
  sends at its rate, oldest first.
  KEYS[1] window: string, µs of the host's next free slot (absent: at once)
  KEYS[2] booked: zset, "<execution id>:<attempt number>" → µs of the slot booked for it
  ARGV[1] now: µs
  ARGV[2] book: "1" = only book (nothing goes: the caller waits for its slot, then asks again
    with "0"), "0" = go when due
  ARGV[3] late: µs a booking may still be taken after its slot (at least one interval)
  ARGV[4..] attempts: 2 values per attempt: 1,000,000 / its cue's max_per_second (µs), its
    booking member "<execution id>:<attempt number>"
  Each attempt, in order: booked and its slot is due (not later than `late` ago) → it goes, its
  booking consumed (book: told its slot); booked, not yet due → told its slot; booked but later
  than that (its holder died, or it came back late), or not booked → the next free slot: now if
  the window is free (it goes; book: it is booked now), else it is booked that slot. Bookings older than an hour (their attempt never came back: deleted, cancelled) are
  dropped.
  returns per attempt two values: 1, µs of the next free slot (it goes now) | 0, µs of the slot
    booked for it (not before then) ]]
local now, book, late = tonumber(ARGV[1]), ARGV[2] == '1', tonumber(ARGV[3])
local at = tonumber(redis.call('GET', KEYS[1]) or '0')
local moved = false
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', '(' .. string.format('%.0f', now - 3600000000))
local out = {}
for i = 4, #ARGV, 2 do
  local interval, member = tonumber(ARGV[i]), ARGV[i + 1]
  local slot = tonumber(redis.call('ZSCORE', KEYS[2], member))
  local due = slot and slot >= now - math.max(interval, late)
  if due and (book or slot > now) then
    out[#out + 1] = 0
    out[#out + 1] = string.format('%.0f', slot)
  elseif due then
    redis.call('ZREM', KEYS[2], member)
    out[#out + 1] = 1
    out[#out + 1] = string.format('%.0f', at)
  elseif at <= now and not book then
    if slot then redis.call('ZREM', KEYS[2], member) end
    at = now + interval
    moved = true
    out[#out + 1] = 1
    out[#out + 1] = string.format('%.0f', at)
  else
    at = math.max(at, now)
    redis.call('ZADD', KEYS[2], at, member)
    out[#out + 1] = 0
    out[#out + 1] = string.format('%.0f', at)
    at = at + interval
    moved = true
  end
end
if moved then  -- kept a minute past the last slot handed out
  redis.call('SET', KEYS[1], string.format('%.0f', at), 'PX', math.ceil((at - now) / 1000) + 60000)
end
if redis.call('EXISTS', KEYS[2]) == 1 then redis.call('PEXPIRE', KEYS[2], 3600000 + math.ceil((at - now) / 1000)) end
return out
