--[[ delivery_extend: lengthen the leases of attempts about to be sent, each only while it still
  holds exactly the lease it took (an attempt that waited behind a busy host must never be sent
  with less lease left than its timeout and a margin)
  KEYS[1] leases: zset, execution id → lease expiry µs
  ARGV[1] now: µs
  ARGV[2..] leases: 3 values per attempt: execution id, lease expiry µs it holds, new lease
    expiry µs (later than the one it holds: the new fencing token)
  returns per attempt the lease it now holds ("" = lost: the execution was taken over by another
    dispatcher, or finished, and must not be sent) ]]
local out = {}
for i = 2, #ARGV, 3 do
  local eid, lease, new = ARGV[i], tonumber(ARGV[i + 1]), ARGV[i + 2]
  local held = redis.call('ZSCORE', KEYS[1], eid)
  if held and tonumber(held) == lease then
    redis.call('ZADD', KEYS[1], new, eid)
    out[#out + 1] = new
  else
    out[#out + 1] = ''
  end
end
return out
