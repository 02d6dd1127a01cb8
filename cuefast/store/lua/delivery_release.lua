--[[ delivery_release: hand back leased webhook attempts that were never sent (or were cut off;
  execution hashes are derived from ARGV[2], the partition's key prefix, in the same slot)
  KEYS[1] leases: zset, execution id → lease expiry µs
  KEYS[2] outbox: stream
  KEYS[3] delayed: zset, execution id → send_at µs
  ARGV[1] now: µs
  ARGV[2] prefix: the partition's key prefix
  ARGV[3] group: the outbox's consumer group
  ARGV[4..] attempts: 4 values per attempt: execution id, stream entry id, lease expiry µs the
    attempt holds, re-queue at µs (≤ now: a fresh outbox entry at once; later: the delayed
    zset, which the scheduler moves to the outbox when due)
  Only an attempt that still holds exactly that lease is released (one taken over as stale by
  another dispatcher, or already finished, is left alone): the lease is removed, the stream
  entry acknowledged and deleted, the status goes back to pending (no attempt counted yet) or
  retry_ready, and on a first attempt started_at / last_attempt_at written by this lease are
  removed again (a retry's last_attempt_at keeps the lease time until its next attempt).
  returns one status per attempt ("" = not released) ]]
--!include dirty
--!include exec_index
--!include outbox_ack
local now, pfx, group = ARGV[1], ARGV[2], ARGV[3]
local out = {}
local acks = {}  -- stream entries to acknowledge and delete, together at the end (outbox_ack)
for i = 4, #ARGV, 4 do
  local eid, entry, lease, at = ARGV[i], ARGV[i + 1], tonumber(ARGV[i + 2]), ARGV[i + 3]
  local held = redis.call('ZSCORE', KEYS[1], eid)
  local status = ''
  if held and tonumber(held) == lease then
    redis.call('ZREM', KEYS[1], eid)
    if entry ~= '' then acks[#acks + 1] = entry end
    local ek = pfx .. 'exec:' .. eid
    local e = redis.call('HMGET', ek, 'st', 'att', 'em')
    if e[1] == 'delivering' then
      local att = tonumber(e[2] or '0')
      status = att > 0 and 'retry_ready' or 'pending'
      redis.call('HSET', ek, 'st', status, 'ua', now)
      dirty(ek)
      exec_reindex(pfx, eid)
      if att == 0 and (not e[3] or e[3] == '') then redis.call('HDEL', ek, 'sa', 'la') end
      if tonumber(at) > tonumber(now) then
        redis.call('ZADD', KEYS[3], at, eid)
      else
        redis.call('XADD', KEYS[2], '*', 'e', eid)
      end
    end
  end
  out[#out + 1] = status
end
outbox_ack(KEYS[2], group, acks)
return out
