--[[ claims_heartbeat: extend the leases of claimed worker executions (execution heartbeat, batch leases)
  KEYS[1] claims zset (execution id → lease expiry µs)  (execution keys derived from ARGV[1])
  ARGV[1] partition key prefix  ARGV[2] account id  ARGV[3] worker id ("" = no ownership check)
  ARGV[4] default lease µs (when the claim recorded none)  ARGV[5] now µs  ARGV[6..] execution ids
  returns 2 values per id: {1, new lease expiry µs} | {-1, ""} no such execution of this account
  | {-2, ""} not a claimed worker execution | {-3, ""} claimed by another worker ]]
--!include dirty
local pfx, acct, worker, now = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[5])
local out = {}
for i = 6, #ARGV do
  local eid = ARGV[i]
  local ek = pfx .. 'exec:' .. eid
  local e = redis.call('HMGET', ek, 'st', 'tr', 'acct', 'cw', 'ls')
  local code, lx = 1, ''
  if not e[1] or e[3] ~= acct then
    code = -1
  elseif e[2] ~= 'worker' or e[1] ~= 'delivering' then
    code = -2
  elseif worker ~= '' and e[4] ~= worker then
    code = -3
  else
    lx = string.format('%.0f', now + (tonumber(e[5]) or tonumber(ARGV[4])))
    redis.call('HSET', ek, 'lh', ARGV[5], 'lx', lx, 'ua', ARGV[5])
    dirty(ek)
    redis.call('ZADD', KEYS[1], lx, eid)
  end
  out[#out + 1] = code
  out[#out + 1] = lx
end
return out
