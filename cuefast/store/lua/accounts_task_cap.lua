--[[ accounts_task_cap: set or remove an account's claim cap of one worker task (the account
  hash's `tcaps` field: a JSON object task → cap, read by authentication with the account)
  KEYS[1] account: the account hash
  ARGV[1] now: µs
  ARGV[2] task
  ARGV[3] cap: the most claims of the task held at once (0 = remove the cap)
  ARGV[4] limit: the most capped tasks an account may have
  returns {OK, caps json} | {NOT_FOUND} no such account | {LIMIT} too many capped tasks ]]
local task, cap, limit = ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
if redis.call('EXISTS', KEYS[1]) == 0 then return {STATUS.NOT_FOUND} end
local raw = redis.call('HGET', KEYS[1], 'tcaps')
local caps = (raw and raw ~= '' and raw ~= '{}') and cjson.decode(raw) or {}
if cap > 0 and caps[task] == nil then
  local n = 0
  for _ in pairs(caps) do n = n + 1 end
  if n >= limit then return {STATUS.LIMIT} end
end
if cap > 0 then caps[task] = cap else caps[task] = nil end
local out = next(caps) == nil and '' or cjson.encode(caps)
if out == '' then redis.call('HDEL', KEYS[1], 'tcaps') else redis.call('HSET', KEYS[1], 'tcaps', out) end
return {STATUS.OK, out}
