-- exec_index: the listing indexes of executions (docs/DESIGN.md "Execution indexes"), so every
-- GET /v1/executions filter, its total and its oldest_claimed_at are read in O(log n), never by
-- scanning. An execution is in one *cell* — "<st>|<os>|<tb>": its status, outcome_state and
-- stored triggered_by — of each of its *registries*, all in its partition's slot:
--   <pfx>ix:a:<account>                     the account's executions on this partition
--   <pfx>ix:c:<cue>                         the cue's executions
--   <pfx>ix:w:<account>:<len>:<worker>      while it has a claimed_by_worker: that worker's
--   <pfx>ix:cw:<cue>:<len>:<worker>         … and that worker's within the cue
-- (the worker id is length-prefixed, so no id can spell another key). A registry is a hash
-- cell → number of executions in it, and "#<cell>" → how many of them have a claimed_at (absent:
-- none, so a listing skips that cell's claimed_at zset). Each cell has two zsets:
--   <registry>|z|<cell>   execution id → created µs (the listing order)
--   <registry>|c|<cell>   execution id → claimed_at µs (only executions with a claimed_at)
-- The execution hash's `ix` field records where it is indexed ("<st>|<os>|<tb>|<cla>|<worker>"),
-- so a change moves it without reading any index. Every script that changes st, os, tb, cw or
-- cla calls exec_reindex after the change; every script that deletes an execution calls
-- exec_unindex before (the script tests check the indexes after every test). Counts move only
-- when a zset really gained or lost the member, so a repeated call cannot skew them.
-- Spelled the same in cuefast/store/keys.py (Keys.ix_*), which tests compare.

local function ix_registries(pfx, acct, cue, cw)
  local t = {pfx .. 'ix:a:' .. acct, pfx .. 'ix:c:' .. cue}
  if cw ~= '' then
    local w = string.len(cw) .. ':' .. cw
    t[3] = pfx .. 'ix:w:' .. acct .. ':' .. w
    t[4] = pfx .. 'ix:cw:' .. cue .. ':' .. w
  end
  return t
end

-- one member into / out of a registry's zset, and its count field moved only when the zset
-- really changed (an emptied count is dropped)
local function ix_put(reg, zset, field, score, eid)
  if redis.call('ZADD', zset, score, eid) == 1 then redis.call('HINCRBY', reg, field, 1) end
end

local function ix_take(reg, zset, field, eid)
  if redis.call('ZREM', zset, eid) == 1 and redis.call('HINCRBY', reg, field, -1) <= 0 then
    redis.call('HDEL', reg, field)
  end
end

-- add (delta 1) or remove (delta -1) one execution at position `ix` of every registry
local function ix_apply(pfx, eid, acct, cue, ix, ca, delta)
  local st, os, tb, cla, cw = string.match(ix, '^([^|]*)|([^|]*)|([^|]*)|([^|]*)|(.*)$')
  local cell = st .. '|' .. os .. '|' .. tb
  for _, reg in ipairs(ix_registries(pfx, acct, cue, cw)) do
    if delta > 0 then
      ix_put(reg, reg .. '|z|' .. cell, cell, ca, eid)
      if cla ~= '' then ix_put(reg, reg .. '|c|' .. cell, '#' .. cell, cla, eid) end
    else
      ix_take(reg, reg .. '|z|' .. cell, cell, eid)
      if cla ~= '' then ix_take(reg, reg .. '|c|' .. cell, '#' .. cell, eid) end
    end
  end
end

-- index execution `eid` where its current fields say (moving it if they changed); a gone hash
-- is left alone (call exec_unindex before deleting one)
local function exec_reindex(pfx, eid)
  local ek = pfx .. 'exec:' .. eid
  local e = redis.call('HMGET', ek, 'acct', 'cue', 'ca', 'st', 'os', 'tb', 'cla', 'cw', 'ix')
  if not e[1] or not e[2] then return end
  local new = (e[4] or '') .. '|' .. (e[5] or '') .. '|' .. (e[6] or '') .. '|' .. (e[7] or '') .. '|' .. (e[8] or '')
  local old = e[9] or ''
  if new == old then return end
  local ca = e[3] or 0
  if old ~= '' then ix_apply(pfx, eid, e[1], e[2], old, ca, -1) end
  ix_apply(pfx, eid, e[1], e[2], new, ca, 1)
  redis.call('HSET', ek, 'ix', new)
end

-- take execution `eid` out of every index (before its hash is deleted)
local function exec_unindex(pfx, eid)
  local ek = pfx .. 'exec:' .. eid
  local e = redis.call('HMGET', ek, 'acct', 'cue', 'ca', 'ix')
  if e[4] and e[4] ~= '' then
    ix_apply(pfx, eid, e[1], e[2], e[4], e[3] or 0, -1)
    redis.call('HDEL', ek, 'ix')
  end
end

-- the index entries of a brand-new execution (st and tb known; no outcome, claim or worker yet)
-- collected for a batch: `zadds` (zset key → {score, member, …}) and `counts` (registry → cell
-- → n), written by the caller with one ZADD per key and exec_index_flush; returns the `ix` value
-- the caller stores in the new hash
local function exec_index_new(pfx, eid, acct, cue, ca, st, tb, zadds, counts)
  local cell = st .. '||' .. tb
  for _, reg in ipairs(ix_registries(pfx, acct, cue, '')) do
    local z = reg .. '|z|' .. cell
    local t = zadds[z]
    if not t then t = {}; zadds[z] = t end
    t[#t + 1] = ca
    t[#t + 1] = eid
    local c = counts[reg]
    if not c then c = {}; counts[reg] = c end
    c[cell] = (c[cell] or 0) + 1
  end
  return cell .. '||'
end

local function exec_index_flush(counts)
  for reg, c in pairs(counts) do
    for cell, n in pairs(c) do redis.call('HINCRBY', reg, cell, n) end
  end
end
