--[[ restore_cues: write snapshotted cues back into an empty partition (cuefast restore)
  KEYS[1] due: the partition's due zset
  ARGV[1] prefix: the partition's key prefix "<pfx>:{pNN}:"
  ARGV[2..] cues: pairs of cue id, cue hash as a JSON object
  Each hash is written as it was (its field '_cfg' back into the cue's config string), with the
  account's listing index of its status and, for an active cue with a next run, its due entry.
  returns the number written ]]
local pfx = ARGV[1]
for i = 2, #ARGV, 2 do
  local id, h = ARGV[i], cjson.decode(ARGV[i + 1])
  local blob = h['_cfg']
  h['_cfg'] = nil
  if blob then redis.call('SET', pfx .. 'cue:' .. id .. ':cfg', blob) end
  local flat = {}
  for f, v in pairs(h) do flat[#flat + 1] = f; flat[#flat + 1] = v end
  redis.call('HSET', pfx .. 'cue:' .. id, unpack(flat))
  redis.call('ZADD', pfx .. 'idx:' .. h['acct'] .. ':cues:' .. h['status'], h['ca'], id)
  if h['status'] == 'active' and h['nr'] and h['nr'] ~= '' then redis.call('ZADD', KEYS[1], h['nr'], id) end
end
return (#ARGV - 1) / 2
