--[[ cues_delete: remove a cue, its config string, its due time and its index entries
  KEYS[1] cue: the cue hash
  KEYS[2] config: the cue's config string
  KEYS[3] due: zset, cue id → next run µs
  KEYS[4] active: the account's index of active cues
  KEYS[5] paused: … of paused cues
  KEYS[6] completed: … of completed cues
  KEYS[7] failed: … of failed cues
  ARGV[1] account_id
  ARGV[2] cue_id
  returns {OK, name} | {NOT_FOUND} no such cue for that account ]]
--!include dirty
local vals = redis.call('HMGET', KEYS[1], 'acct', 'name')
if vals[1] ~= ARGV[1] then return {STATUS.NOT_FOUND} end
redis.call('DEL', KEYS[1], KEYS[2])
-- its delivery.max_concurrency permits and waiting list (lib/cue_cap.lua; same slot): the waiting
-- executions can no longer be delivered (their cue is gone)
local pfx = string.match(KEYS[1], '^(.-}:)')
redis.call('DEL', pfx .. 'cap:' .. ARGV[2], pfx .. 'capq:' .. ARGV[2])
dirty(KEYS[1])
redis.call('ZREM', KEYS[3], ARGV[2])
for i = 4, 7 do redis.call('ZREM', KEYS[i], ARGV[2]) end
return {STATUS.OK, vals[2]}
