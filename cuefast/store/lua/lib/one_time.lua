-- one_time: which execution decides a one-time cue (CONTRACT.md §7.2) — the one definition every
-- script uses. The scheduler's executions carry no 'tb' field (schedule_materialize.lua leaves defaults
-- out): an execution's triggered_by is read only through triggered_by() (Python:
-- cuefast.services.executions.triggered_by).
local function triggered_by(tb)
  if not tb or tb == '' then return 'scheduled' end
  return tb
end

-- true when the cue `cue_id` is one-time and an execution triggered by `tb` (its raw 'tb' field)
-- is its scheduled one: that execution's terminal status decides the cue (completed on success,
-- failed on any other end). A cue that is gone decides nothing. `sch` (optional): the cue's
-- 'sch' field when the caller has read it (false: absent)
local function decides_cue(pfx, cue_id, tb, sch)
  if triggered_by(tb) ~= 'scheduled' then return false end
  if sch == nil then sch = redis.call('HGET', pfx .. 'cue:' .. cue_id, 'sch') end
  return sch ~= false and string.sub(sch, 1, 5) == 'once|'
end
