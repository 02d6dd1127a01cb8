--[[ claims_heartbeat: extend the leases of claimed worker executions (execution heartbeat, batch
  leases; execution keys derived from ARGV[2])
  KEYS[1] claims: zset, execution id → lease expiry µs
  ARGV[1] now: µs
  ARGV[2] prefix: the partition's key prefix
  ARGV[3] account_id
  ARGV[4] worker_id: "" = no ownership check
  ARGV[5] lease_us: the default lease (when the claim recorded none)
  ARGV[6..] execution_ids
  returns 3 values per id: {OK, new lease expiry µs, its task ("" none)} | {NOT_FOUND, "", ""}
    no such execution of this account | {WRONG_STATE, "", ""} not a claimed worker execution |
    {WRONG_STATE, "cancelled", ""} cancelled by its cue's overlap policy (lib/overlap.lua): its
    holder must stop | {CONFLICT, "", ""} claimed by another worker ]]
--!include dirty
local now_s, pfx, acct, worker = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local now = tonumber(now_s)
local out = {}
for i = 6, #ARGV do
  local eid = ARGV[i]
  local ek = pfx .. 'exec:' .. eid
  local e = redis.call('HMGET', ek, 'st', 'tr', 'acct', 'cw', 'ls', 'tk')
  local code, lx, task = STATUS.OK, '', ''
  if not e[1] or e[3] ~= acct then
    code = STATUS.NOT_FOUND
  elseif e[2] ~= 'worker' or e[1] ~= 'delivering' then
    code = STATUS.WRONG_STATE
    if e[1] == 'cancelled' then lx = 'cancelled' end
  elseif worker ~= '' and e[4] ~= worker then
    code = STATUS.CONFLICT
  else
    lx = string.format('%.0f', now + (tonumber(e[5]) or tonumber(ARGV[5])))
    redis.call('HSET', ek, 'lh', now_s, 'lx', lx, 'ua', now_s)
    dirty(ek)
    redis.call('ZADD', KEYS[1], lx, eid)
    task = e[6] or ''
  end
  out[#out + 1] = code
  out[#out + 1] = lx
  out[#out + 1] = task
end
return out
