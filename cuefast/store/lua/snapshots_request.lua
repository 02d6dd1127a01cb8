--[[ snapshots_request: snapshots on demand (`cuefast snapshot` while another process holds the
  snapshot lease). Requests are numbered; a snapshot serves every request made before it began.
  KEYS[1] requests: hash, `asked` = requests made so far, `served` = the highest request number
    a complete snapshot has covered
  ARGV[1] mode: "ask" (a new request) | "read" | "served" (a snapshot that read `asked` =
    ARGV[2] before it began has completed; `served` never moves back)
  ARGV[2] number: that number ("served")
  returns {asked, served} after the call (after "ask": asked is the new request's number) ]]
if ARGV[1] == 'ask' then
  redis.call('HINCRBY', KEYS[1], 'asked', 1)
elseif ARGV[1] == 'served' then
  local n = tonumber(ARGV[2])
  if n > (tonumber(redis.call('HGET', KEYS[1], 'served')) or 0) then
    redis.call('HSET', KEYS[1], 'served', n)
  end
end
local r = redis.call('HMGET', KEYS[1], 'asked', 'served')
return {tonumber(r[1]) or 0, tonumber(r[2]) or 0}
