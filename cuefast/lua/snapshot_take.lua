--[[ snapshot_take: hand a bounded batch of dirty ids to the snapshotter, crash-safely
  KEYS[1] the slot's dirty set  KEYS[2] the slot's processing set
  ARGV[1] batch size
  returns the members to snapshot: the processing set when an earlier batch was never committed
  (a snapshotter died between take and commit: retried first), else up to ARGV[1] members moved
  from dirty to processing in this one atomic step. A member changed again meanwhile is simply
  dirty again. ]]
local held = redis.call('SMEMBERS', KEYS[2])
if #held > 0 then return held end
local ids = redis.call('SPOP', KEYS[1], tonumber(ARGV[1]))
for i = 1, #ids, 1000 do
  redis.call('SADD', KEYS[2], unpack(ids, i, math.min(i + 999, #ids)))
end
return ids
