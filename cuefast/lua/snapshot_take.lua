--[[ snapshot_take: hand a bounded batch of dirty ids to the snapshotter, crash-safely
  KEYS[1] the slot's dirty set  KEYS[2] the slot's processing set
  ARGV[1] batch size
  returns {member, its hash as a flat field/value array ({} when gone), …} of the batch to
  snapshot: the processing set when an earlier batch was never committed (a snapshotter died
  between take and commit: retried first), else up to ARGV[1] members moved from dirty to
  processing in this one atomic step. The hashes (a cue's with its config string as the field
  '_cfg') are read in the same step (one round trip per
  batch). A member changed again later is simply dirty again. ]]
local ids = redis.call('SMEMBERS', KEYS[2])
if #ids == 0 then
  ids = redis.call('SPOP', KEYS[1], tonumber(ARGV[1]))
  for i = 1, #ids, 1000 do
    redis.call('SADD', KEYS[2], unpack(ids, i, math.min(i + 999, #ids)))
  end
end
local slot = string.match(KEYS[1], '^(.*)dirty$')
local out = {}
for _, m in ipairs(ids) do
  out[#out + 1] = m
  local h = redis.call('HGETALL', slot .. m)
  if #h > 0 and string.sub(m, 1, 4) == 'cue:' then
    -- a cue is two keys (docs/DESIGN.md): its config string travels as the field '_cfg'
    local blob = redis.call('GET', slot .. m .. ':cfg')
    if blob then h[#h + 1] = '_cfg'; h[#h + 1] = blob end
  end
  out[#out + 1] = h
end
return out
