--[[ snapshots_take: hand a bounded batch of dirty ids to the snapshotter, crash-safely
  KEYS[1] dirty: the slot's dirty set
  KEYS[2] processing: the slot's processing set
  ARGV[1] batch: size
  returns {member, its hash as one JSON object ('' when gone), …} of the batch to snapshot: the
    processing set when an earlier batch was never committed (a snapshotter died between take
    and commit: retried first), else up to ARGV[1] members moved from dirty to processing in
    this one atomic step.
  The hashes (a cue's with its config string as the field '_cfg': a cue is two keys) are read in
  the same step (one round trip per batch) and encoded here: one bulk string per object instead
  of one per field and value (the snapshotter's client parse and its own JSON encoding were a
  third of its CPU; the JSON is what PostgreSQL's ``doc`` keeps). A member changed again later
  is simply dirty again. ]]
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
  local flat = redis.call('HGETALL', slot .. m)
  if #flat == 0 then
    out[#out + 1] = ''
  else
    local h = {}
    for i = 1, #flat, 2 do
      h[flat[i]] = flat[i + 1]
    end
    if string.sub(m, 1, 4) == 'cue:' then
      h['_cfg'] = redis.call('GET', slot .. m .. ':cfg') or nil
    elseif string.sub(m, 1, 5) == 'exec:' and h['acct'] and not h['id'] then
      h['id'] = string.sub(m, 6)  -- an execution hash holds no id field (the key has it); the doc does
    end
    out[#out + 1] = cjson.encode(h)
  end
end
return out
