--[[ cues_update: apply a PATCH to a cue (optimistic: the config version must not have moved)
  KEYS[1] cue: the cue hash
  KEYS[2] due: zset, cue id → next run µs
  KEYS[3] active: the account's index of active cues
  KEYS[4] paused: … of paused cues
  KEYS[5] completed: … of completed cues
  KEYS[6] failed: … of failed cues
  KEYS[7] config: the cue's config string
  ARGV[1] account_id
  ARGV[2] version: the version the PATCH read
  ARGV[3] cue_id
  ARGV[4] status: the new status ("" = keep)
  ARGV[5] next_run: "keep" | "" (clear) | µs
  ARGV[6] config: the new config string, "<config JSON>" or "<config JSON>\n<payload JSON>" for a
    payload over 64 B ("" = keep)
  ARGV[7..] fields: field, value pairs (always the new version 'v' and 'ua')
  returns {OK} | {NOT_FOUND} no such cue for that account | {CONFLICT} version moved, or the new
    next run is a slot that has already fired (the cue's 'fa', set by schedule_materialize.lua):
    re-read and retry ]]
--!include dirty
local acct = redis.call('HGET', KEYS[1], 'acct')
if acct ~= ARGV[1] then return {STATUS.NOT_FOUND} end
if (redis.call('HGET', KEYS[1], 'v') or '1') ~= ARGV[2] then return {STATUS.CONFLICT} end  -- absent = 1
if ARGV[5] ~= '' and ARGV[5] ~= 'keep' and redis.call('HGET', KEYS[1], 'fa') == ARGV[5] then
  return {STATUS.CONFLICT}  -- fired since the PATCH read the cue: the re-read sees 'fa'
end
local status_key = {active = KEYS[3], paused = KEYS[4], completed = KEYS[5], failed = KEYS[6]}
local id = ARGV[3]
dirty(KEYS[1])
local new_status = ARGV[4]
if new_status ~= '' then
  local cur = redis.call('HGET', KEYS[1], 'status')
  if cur ~= new_status then
    local score = redis.call('HGET', KEYS[1], 'ca')
    if status_key[cur] then redis.call('ZREM', status_key[cur], id) end
    redis.call('ZADD', status_key[new_status], score, id)
    redis.call('HSET', KEYS[1], 'status', new_status)
  end
end
if ARGV[5] == '' then
  redis.call('HSET', KEYS[1], 'nr', '')
  redis.call('ZREM', KEYS[2], id)
elseif ARGV[5] ~= 'keep' then
  redis.call('HSET', KEYS[1], 'nr', ARGV[5])
  redis.call('ZADD', KEYS[2], ARGV[5], id)
end
if ARGV[6] ~= '' then
  redis.call('SET', KEYS[7], ARGV[6])
  -- a long payload lives in the config string, a short one (then among the fields) in the hash
  if string.find(ARGV[6], '\n', 1, true) then redis.call('HDEL', KEYS[1], 'pl') end
end
local fields = {}
for i = 7, #ARGV do fields[#fields + 1] = ARGV[i] end
if #fields > 0 then redis.call('HSET', KEYS[1], unpack(fields)) end
return {STATUS.OK}
