-- reserve_name: claim a cue name for a cue id in an account's cue-names hash (name →
-- "<cue id>:<reserved at, s>"), unique per account. Shared by cues_reserve_name.lua and the
-- create's reservation folded into accounts_authenticate.lua (docs/DESIGN.md "Cue names").
-- `limit` >= 0: when the account already has that many names, answer COUNT so the caller counts
-- exactly (names also cover completed/failed cues); `replace_if`: take the name over only from
-- this value ("" = only if free). Returns {OK} | {EXISTS, current value} | {COUNT}.
local function reserve_name(names, now_us, name, cue_id, limit, replace_if)
  local value = cue_id .. ':' .. string.format('%d', math.floor(now_us / 1000000))  -- seconds: 6 B less
  local cur = redis.call('HGET', names, name)
  if cur then
    if replace_if == '' or cur ~= replace_if then
      if string.sub(cur, 1, #cue_id + 1) == cue_id .. ':' then return {STATUS.OK} end
      return {STATUS.EXISTS, cur}
    end
  end
  if limit >= 0 and redis.call('HLEN', names) >= limit then return {STATUS.COUNT} end
  redis.call('HSET', names, name, value)
  return {STATUS.OK}
end
