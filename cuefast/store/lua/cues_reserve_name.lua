--[[ cues_reserve_name: claim a cue name for a cue id, unique per account
  KEYS[1] the account's cue-names hash (name → "<cue id>:<reserved at, s>")
  ARGV[1] name  ARGV[2] value "<cue id>:<now s>"  ARGV[3] cue-limit hint: when >= 0 and the
  account already has that many names, answer -2 so the caller counts exactly (names also
  cover completed/failed cues, so fewer names than the limit proves the limit is not hit);
  -1 skips the hint  ARGV[4] replace-only-if value ("" = only if free): a stale reservation
  of a cue that no longer exists is taken over this way
  returns {1} | {-1, current value} taken | {-2} count needed ]]
local cur = redis.call('HGET', KEYS[1], ARGV[1])
if cur then
  local cue_id = string.match(ARGV[2], '^([^:]+):')
  if ARGV[4] == '' or cur ~= ARGV[4] then
    if string.sub(cur, 1, #cue_id + 1) == cue_id .. ':' then return {1} end
    return {-1, cur}
  end
end
local limit = tonumber(ARGV[3])
if limit >= 0 and redis.call('HLEN', KEYS[1]) >= limit then return {-2} end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return {1}
