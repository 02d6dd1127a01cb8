--[[ cues_reserve_name: claim a cue name for a cue id, unique per account
  KEYS[1] names: the account's cue-names hash (name → "<cue id>:<reserved at, s>")
  ARGV[1] now: µs
  ARGV[2] name
  ARGV[3] cue_id
  ARGV[4] limit_hint: when >= 0 and the account already has that many names, answer COUNT so
    the caller counts exactly (names also cover completed/failed cues, so fewer names than the
    limit proves the limit is not hit); -1 skips the hint
  ARGV[5] replace_if: take the name over only from this value ("" = only if free): a stale
    reservation of a cue that no longer exists is taken over this way
  returns {OK} | {EXISTS, current value} taken | {COUNT} count needed ]]
local name, cue_id = ARGV[2], ARGV[3]
local value = cue_id .. ':' .. string.format('%d', math.floor(tonumber(ARGV[1]) / 1000000))  -- seconds: 6 B less
local cur = redis.call('HGET', KEYS[1], name)
if cur then
  if ARGV[5] == '' or cur ~= ARGV[5] then
    if string.sub(cur, 1, #cue_id + 1) == cue_id .. ':' then return {STATUS.OK} end
    return {STATUS.EXISTS, cur}
  end
end
local limit = tonumber(ARGV[4])
if limit >= 0 and redis.call('HLEN', KEYS[1]) >= limit then return {STATUS.COUNT} end
redis.call('HSET', KEYS[1], name, value)
return {STATUS.OK}
