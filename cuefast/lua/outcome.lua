--[[ outcome: record an execution's outcome exactly once, atomically with its status effect
  KEYS[1] execution hash   (the cue hash and indexes are derived from ARGV[5], same slot)
  ARGV[1] outcome JSON  ARGV[2] success "1" | "0"  ARGV[3] outcome_state  ARGV[4] error text
  ARGV[5] partition key prefix  ARGV[6] 1 if the cue is one-time (a scheduled execution
  decides it)  ARGV[7] now µs
  returns {1, status} | {-1} an outcome is already recorded | {-2} no such execution ]]
--!include set_cue_status
--!include work_index
local e = redis.call('HMGET', KEYS[1], 'st', 'tr', 'cue', 'acct', 'tb', 'oc', 'id', 'tk', 'ag')
if not e[1] then return {-2} end
if e[6] and e[6] ~= '' then return {-1} end
local now, pfx = ARGV[7], ARGV[5]
local st, tr = e[1], e[2]
redis.call('HSET', KEYS[1], 'oc', ARGV[1], 'os', ARGV[3], 'ua', now)
local terminal = {success = true, failed = true, missed = true, outcome_timeout = true}
local ck = pfx .. 'cue:' .. e[3]
local cue_exists = redis.call('EXISTS', ck) == 1
if not terminal[st] and (tr == 'worker' or st == 'pending_outcome') then
  if ARGV[2] == '1' then
    st = 'success'
    redis.call('HSET', KEYS[1], 'st', st, 'da', now, 'em', '', 'od', '')
  else
    st = 'failed'
    redis.call('HSET', KEYS[1], 'st', st, 'em', ARGV[4], 'od', '')
  end
  redis.call('ZREM', pfx .. 'leases', e[7])
  if tr == 'worker' then  -- no longer claimable nor claimed (a late outcome is accepted too)
    work_rem(pfx, e[4], e[7], e[8], e[9])
    redis.call('ZREM', pfx .. 'claims', e[7])
    redis.call('HSET', KEYS[1], 'lx', '')
  end
  redis.call('ZREM', pfx .. 'deadlines', e[7])
  if cue_exists and ARGV[6] == '1' and e[5] == 'scheduled' then
    set_cue_status(pfx, e[3], e[4], st == 'success' and 'completed' or 'failed')
  end
end
if cue_exists and tr == 'worker' then
  redis.call('HINCRBY', ck, 'rc', 1)
  redis.call('HSET', ck, 'lr', now)
end
return {1, st}
