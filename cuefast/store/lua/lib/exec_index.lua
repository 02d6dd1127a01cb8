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
--   <registry>|z|<cell>   member → created µs (the listing order)
--   <registry>|c|<cell>   member → claimed_at µs (only executions with a claimed_at)
-- A registry listed over partitions (account, worker) also has a *bounds* zset, so a listing
-- opens only the cells that can hold what it returns (docs/DESIGN.md "Execution listing indexes"):
--   <registry>|b          "z<cell>" → an upper bound of the newest created µs in the cell's zset,
--                         "c<cell>" → minus a lower bound of its oldest claimed_at
-- both kept by one ZADD GT per put (a removal leaves a bound a bound; an emptied cell drops its
-- member, so an emptied registry drops the key). A cell without a bound is read as before.
-- A member is the execution id's 16 bytes (ix_member; ix_id spells it back): a skiplist entry
-- holds a 32-byte allocation for it instead of 48, a listpack entry 18 bytes instead of 38, and
-- byte order is the canonical id's order, so ties still list by id. (Members written before
-- layout 2 are the 36-character ids: ix_id returns them as they are and ix_take removes either
-- form, so an index half upgraded still lists and moves right.)
-- The execution hash's `ix` field records where it is indexed ("<st>|<os>|<tb>|<c>|<worker>",
-- <c> "1" when it has a claimed_at), so a change moves it without reading any index. Every script that changes st, os, tb, cw or
-- cla calls exec_reindex after the change; every script that deletes an execution calls
-- exec_unindex before (the script tests check the indexes after every test). Counts move only
-- when a zset really gained or lost the member, so a repeated call cannot skew them.
-- Spelled the same in cuefast/store/keys.py (Keys.ix_*), which tests compare.

-- this call's strings, each built once (a concatenation or a pattern match costs more than
-- many table lookups): pfx → account → {[1] = its registry, cell → the cell's zset}; an `ix`
-- value → {st, os, tb, c, worker, cell} (a batch's executions share a few)
local IX_ACCTS, IX_PARSED = {}, {}

local function ix_acct(pfx, acct)
  local accts = IX_ACCTS[pfx]
  if not accts then accts = {}; IX_ACCTS[pfx] = accts end
  local a = accts[acct]
  if not a then a = {[1] = pfx .. 'ix:a:' .. acct}; accts[acct] = a end
  return a
end

local function ix_parse(ix)
  local p = IX_PARSED[ix]
  if not p then
    local st, os, tb, c, cw = string.match(ix, '^([^|]*)|([^|]*)|([^|]*)|([^|]*)|(.*)$')
    p = {st, os, tb, c, cw, st .. '|' .. os .. '|' .. tb}
    IX_PARSED[ix] = p
  end
  return p
end

local function ix_registries(pfx, acct, cue, cw)
  local t = {ix_acct(pfx, acct)[1], pfx .. 'ix:c:' .. cue}
  if cw ~= '' then
    local w = string.len(cw) .. ':' .. cw
    t[3] = pfx .. 'ix:w:' .. acct .. ':' .. w
    t[4] = pfx .. 'ix:cw:' .. cue .. ':' .. w
  end
  return t
end

-- an execution id's index member: its 16 bytes (an id that is no canonical UUID: itself); by
-- 4-digit groups, ~2 us a call (the scheduler pays it once per execution it creates)
local function ix_member(eid)
  if #eid ~= 36 then return eid end
  local s, t, f, b = string.sub, tonumber, math.floor, string.byte
  local n1, n2, n3, n4 = t(s(eid, 1, 4), 16), t(s(eid, 5, 8), 16), t(s(eid, 10, 13), 16), t(s(eid, 15, 18), 16)
  local n5, n6, n7, n8 = t(s(eid, 20, 23), 16), t(s(eid, 25, 28), 16), t(s(eid, 29, 32), 16), t(s(eid, 33, 36), 16)
  if not (n1 and n2 and n3 and n4 and n5 and n6 and n7 and n8)
      or b(eid, 9) ~= 45 or b(eid, 14) ~= 45 or b(eid, 19) ~= 45 or b(eid, 24) ~= 45 then
    return eid
  end
  return string.char(f(n1 / 256), n1 % 256, f(n2 / 256), n2 % 256, f(n3 / 256), n3 % 256, f(n4 / 256), n4 % 256,
    f(n5 / 256), n5 % 256, f(n6 / 256), n6 % 256, f(n7 / 256), n7 % 256, f(n8 / 256), n8 % 256)
end

-- the execution id of an index member (a listing spells thousands: one concatenation of
-- table lookups is ~3x faster than string.format; the table is built at the first use in a call)
local HEX = nil
local function ix_id(m)
  if #m ~= 16 then return m end
  if not HEX then
    HEX = {
    '00','01','02','03','04','05','06','07','08','09','0a','0b','0c','0d','0e','0f',
    '10','11','12','13','14','15','16','17','18','19','1a','1b','1c','1d','1e','1f',
    '20','21','22','23','24','25','26','27','28','29','2a','2b','2c','2d','2e','2f',
    '30','31','32','33','34','35','36','37','38','39','3a','3b','3c','3d','3e','3f',
    '40','41','42','43','44','45','46','47','48','49','4a','4b','4c','4d','4e','4f',
    '50','51','52','53','54','55','56','57','58','59','5a','5b','5c','5d','5e','5f',
    '60','61','62','63','64','65','66','67','68','69','6a','6b','6c','6d','6e','6f',
    '70','71','72','73','74','75','76','77','78','79','7a','7b','7c','7d','7e','7f',
    '80','81','82','83','84','85','86','87','88','89','8a','8b','8c','8d','8e','8f',
    '90','91','92','93','94','95','96','97','98','99','9a','9b','9c','9d','9e','9f',
    'a0','a1','a2','a3','a4','a5','a6','a7','a8','a9','aa','ab','ac','ad','ae','af',
    'b0','b1','b2','b3','b4','b5','b6','b7','b8','b9','ba','bb','bc','bd','be','bf',
    'c0','c1','c2','c3','c4','c5','c6','c7','c8','c9','ca','cb','cc','cd','ce','cf',
    'd0','d1','d2','d3','d4','d5','d6','d7','d8','d9','da','db','dc','dd','de','df',
    'e0','e1','e2','e3','e4','e5','e6','e7','e8','e9','ea','eb','ec','ed','ee','ef',
    'f0','f1','f2','f3','f4','f5','f6','f7','f8','f9','fa','fb','fc','fd','fe','ff'
  }
  end
  local h = HEX
  local a1, a2, a3, a4, a5, a6, a7, a8, a9, a10, a11, a12, a13, a14, a15, a16 = string.byte(m, 1, 16)
  return h[a1 + 1] .. h[a2 + 1] .. h[a3 + 1] .. h[a4 + 1] .. '-' .. h[a5 + 1] .. h[a6 + 1] .. '-' .. h[a7 + 1]
    .. h[a8 + 1] .. '-' .. h[a9 + 1] .. h[a10 + 1] .. '-' .. h[a11 + 1] .. h[a12 + 1] .. h[a13 + 1] .. h[a14 + 1]
    .. h[a15 + 1] .. h[a16 + 1]
end

-- one member into / out of a registry's zset, and its count field moved only when the zset
-- really changed (an emptied count is dropped); `m` is ix_member(eid), and ix_take also removes
-- the id's pre-layout-2 spelling (`bounded`: the registry has a bounds zset, an account's or a
-- worker's — not a cue's, whose cells empty on every move of a cue's only execution). The
-- increments are strings: Redis 7.0 spells a Lua number
-- given to redis.call with snprintf("%.17g"), ~2.2k instructions each (callgrind)
local function ix_put(reg, zset, field, score, m)
  if redis.call('ZADD', zset, score, m) == 1 then redis.call('HINCRBY', reg, field, '1') end
end

-- a cell whose count fell to zero: its count field goes and, in a bounded registry, its bound
-- ("#<cell>" → "c<cell>", "<cell>" → "z<cell>")
local function ix_emptied(reg, field, bounded)
  redis.call('HDEL', reg, field)
  if not bounded then return end
  if string.byte(field) == 35 then
    redis.call('ZREM', reg .. '|b', 'c' .. string.sub(field, 2))
  else
    redis.call('ZREM', reg .. '|b', 'z' .. field)
  end
end

local function ix_take(reg, zset, field, m, eid, bounded)
  if (redis.call('ZREM', zset, m) == 1 or (eid ~= m and redis.call('ZREM', zset, eid) == 1))
      and redis.call('HINCRBY', reg, field, '-1') <= 0 then
    ix_emptied(reg, field, bounded)
  end
end

-- minus a score, spelled exactly (a number as redis.call spells it, "%.17g"; a string unchanged)
local function ix_neg(v)
  if type(v) == 'number' then return -v end
  return '-' .. v
end

-- raise cell's bounds in registry `reg`'s bounds zset to cover a member created `ca` and, when
-- `cla` is not "", claimed at `cla` (one ZADD GT: the c bound is stored negated)
local function ix_bound(reg, cell, ca, cla)
  if cla ~= '' then
    redis.call('ZADD', reg .. '|b', 'GT', ca, 'z' .. cell, ix_neg(cla), 'c' .. cell)
  else
    redis.call('ZADD', reg .. '|b', 'GT', ca, 'z' .. cell)
  end
end

-- A batch's moves, deferred (ix_move's `ixd`, made by ix_deferred, written by ix_flush): one
-- ZREM and one ZADD per zset, one HINCRBY per count and one ZADD GT per bounds zset for the
-- whole batch, instead of four to nine calls per execution. Only for a script in which each
-- execution moves at most once and nothing reads the indexes before the flush
-- (outcomes_record.lua: a second outcome of an execution in one call is EXISTS). `cues`: the
-- cues' registries are deferred too — worth it only when a batch often holds several
-- executions of one cue (outcomes); otherwise each cue's zset gets one member, and collecting it
-- (a table per key, the flush) costs more than the calls it saves (delivery: +3.5 % callgrind)
local function ix_deferred(cues)
  return {z = {}, order = {}, b = {}, cues = cues}
end

-- the deferred work on `zset` (a cell's zset of registry `reg`, counted in its field `field`)
local function ixd_zset(ixd, reg, zset, field, bounded)
  local t = ixd.z[zset]
  if not t then
    t = {reg = reg, field = field, bounded = bounded, rem = {}, ids = {}, add = {}}
    ixd.z[zset] = t
    ixd.order[#ixd.order + 1] = zset
  end
  return t
end

-- A batch's bounds (ix_deferred's `b`, exec_index_new's IX_BOUNDS): registry → bound name
-- ("z<cell>" / "c<cell>") → the highest score the batch needs, spelled as ZADD gets it (the c
-- bound negated). ix_raise raises one, ix_write_bounds writes each registry's with one ZADD GT.
local function ix_raise(bounds, reg, name, score)
  local b = bounds[reg]
  if not b then b = {}; bounds[reg] = b end
  local had = b[name]
  -- (a batch's scores are mostly one string, its `now`: equal strings are one object in Lua, and
  -- a tonumber is ~1.4k instructions, two strtod)
  if had == nil or (score ~= had and tonumber(score) > tonumber(had)) then b[name] = score end
end

local function ix_write_bounds(bounds)
  for reg, b in pairs(bounds) do
    local args = {}
    for name, score in pairs(b) do args[#args + 1] = score; args[#args + 1] = name end
    redis.call('ZADD', reg .. '|b', 'GT', unpack(args))
  end
end

-- add (delta 1) or remove (delta -1) one execution at position `ix` of every registry (`cla`:
-- its claimed_at, when adding); `ixd` (optional): deferred to ix_flush; `m` (optional):
-- ix_member(eid), when the caller has it
local function ix_apply(pfx, eid, acct, cue, ix, ca, cla, delta, ixd, m)
  local p = ix_parse(ix)
  local c, cw, cell = p[4], p[5], p[6]
  m = m or ix_member(eid)
  local a = ix_acct(pfx, acct)
  local az = a[cell]
  if not az then az = a[1] .. '|z|' .. cell; a[cell] = az end
  for i, reg in ipairs(ix_registries(pfx, acct, cue, cw)) do
    if ixd and (i % 2 == 1 or ixd.cues) then
      local bounded = i % 2 == 1
      local t = ixd_zset(ixd, reg, i == 1 and az or reg .. '|z|' .. cell, cell, bounded)
      local tc = c ~= '' and ixd_zset(ixd, reg, reg .. '|c|' .. cell, '#' .. cell, bounded)
      if delta > 0 then
        t.add[#t.add + 1] = ca; t.add[#t.add + 1] = m
        if tc then tc.add[#tc.add + 1] = cla; tc.add[#tc.add + 1] = m end
        if bounded then
          ix_raise(ixd.b, reg, 'z' .. cell, ca)
          if tc then ix_raise(ixd.b, reg, 'c' .. cell, ix_neg(cla)) end
        end
      else
        t.rem[#t.rem + 1] = m; t.ids[#t.ids + 1] = eid
        if tc then tc.rem[#tc.rem + 1] = m; tc.ids[#tc.ids + 1] = eid end
      end
    elseif delta > 0 then
      ix_put(reg, i == 1 and az or reg .. '|z|' .. cell, cell, ca, m)
      if c ~= '' then ix_put(reg, reg .. '|c|' .. cell, '#' .. cell, cla, m) end
      -- the account's (1) and the worker's (3) registries are listed over partitions: bounded
      if i % 2 == 1 then ix_bound(reg, cell, ca, c ~= '' and cla or '') end
    else
      ix_take(reg, i == 1 and az or reg .. '|z|' .. cell, cell, m, eid, i % 2 == 1)
      if c ~= '' then ix_take(reg, reg .. '|c|' .. cell, '#' .. cell, m, eid, i % 2 == 1) end
    end
  end
end

-- the `ix` value (the cells an execution is in) of these fields: "<st>|<os>|<tb>|<c>|<worker>"
-- (missing fields, false from HMGET, count as "")
local function ix_of(st, os, tb, cla, cw)
  return (st or '') .. '|' .. (os or '') .. '|' .. (tb or '') .. '|' .. ((cla or '') ~= '' and '1' or '')
    .. '|' .. (cw or '')
end

-- move execution `eid` from the cells of `old` (its stored `ix`) to those of `new` (ix_of its
-- fields after a change): true when it moved, and the caller stores `ix` = new with its own
-- HSET of the hash (the fields were read once, the hash written once); false when the cells
-- are the same (a claimed_at that changed alone: exec_reindex) or the hash has no acct / cue
-- (left alone, as exec_reindex leaves it). `ixd` (optional, ix_deferred): the writes are
-- collected for ix_flush
local function ix_move(pfx, eid, acct, cue, ca, cla, old, new, ixd)
  if new == old or not acct or not cue then return false end
  ca = ca or 0
  local m = ix_member(eid)
  if old ~= '' then ix_apply(pfx, eid, acct, cue, old, ca, '', -1, ixd, m) end
  ix_apply(pfx, eid, acct, cue, new, ca, cla or '', 1, ixd, m)
  return true
end

-- write a batch's deferred moves (ix_deferred): the removals first, so a cell the batch empties
-- drops its count and bound as ix_take would, then the additions (counts move by what the zsets
-- really lost and gained), then each bounds zset's raised bounds with one ZADD GT
local function ix_flush(ixd)
  -- `cmd` on `key` with the values of list `t`, `step` at a time: the sum of the replies
  local function each(cmd, key, t, step)
    local n = 0
    for i = 1, #t, step do n = n + redis.call(cmd, key, unpack(t, i, math.min(i + step - 1, #t))) end
    return n
  end
  for _, zset in ipairs(ixd.order) do
    local t = ixd.z[zset]
    if #t.rem > 0 then
      local n = each('ZREM', zset, t.rem, 1000)
      if n < #t.rem then  -- members written before layout 2: their 36-character ids
        local old = {}
        for j = 1, #t.rem do
          if t.ids[j] ~= t.rem[j] then old[#old + 1] = t.ids[j] end
        end
        n = n + each('ZREM', zset, old, 1000)
      end
      if n > 0 and redis.call('HINCRBY', t.reg, t.field, string.format('%d', -n)) <= 0 then
        ix_emptied(t.reg, t.field, t.bounded)
      end
    end
  end
  for _, zset in ipairs(ixd.order) do
    local t = ixd.z[zset]
    local n = #t.add > 0 and each('ZADD', zset, t.add, 2000) or 0
    if n > 0 then redis.call('HINCRBY', t.reg, t.field, n == 1 and '1' or string.format('%d', n)) end
  end
  ix_write_bounds(ixd.b)
  ixd.z, ixd.order, ixd.b = {}, {}, {}
end

-- index execution `eid` where its current fields say (moving it if they changed); a gone hash
-- is left alone (call exec_unindex before deleting one). A script that has just read and
-- written the fields uses ix_of and ix_move instead (no second read, no second write).
local function exec_reindex(pfx, eid)
  local ek = pfx .. 'exec:' .. eid
  local e = redis.call('HMGET', ek, 'acct', 'cue', 'ca', 'st', 'os', 'tb', 'cla', 'cw', 'ix')
  if not e[1] or not e[2] then return end
  local cla = e[7] or ''
  local new = ix_of(e[4], e[5], e[6], cla, e[8])
  local old = e[9] or ''
  if new == old then
    -- the same cells: only a claimed_at that changed alone has its zsets rescored
    if cla ~= '' then
      local st, os, tb, _, cw = string.match(new, '^([^|]*)|([^|]*)|([^|]*)|([^|]*)|(.*)$')
      local cell = st .. '|' .. os .. '|' .. tb
      local m = ix_member(eid)
      local regs = ix_registries(pfx, e[1], e[2], cw)
      if redis.call('ZSCORE', regs[1] .. '|c|' .. cell, m) ~= cla then
        for i, reg in ipairs(regs) do
          ix_put(reg, reg .. '|c|' .. cell, '#' .. cell, cla, m)
          if i % 2 == 1 then redis.call('ZADD', reg .. '|b', 'GT', ix_neg(cla), 'c' .. cell) end
        end
      end
    end
    return
  end
  ix_move(pfx, eid, e[1], e[2], e[3], cla, old, new)
  redis.call('HSET', ek, 'ix', new)
end

-- take execution `eid` out of every index (before its hash is deleted)
local function exec_unindex(pfx, eid)
  local ek = pfx .. 'exec:' .. eid
  local e = redis.call('HMGET', ek, 'acct', 'cue', 'ca', 'ix')
  if e[4] and e[4] ~= '' then
    ix_apply(pfx, eid, e[1], e[2], e[4], e[3] or 0, '', -1)
    redis.call('HDEL', ek, 'ix')
  end
end

-- the index entries of a brand-new execution (st and tb known; no outcome, claim or worker yet)
-- collected for a batch: `zadds` (zset key → {score, member, …}) and `counts` (registry → cell
-- → n), written by the caller with one ZADD per key and exec_index_flush; `m` (optional) is
-- ix_member(eid) when the caller has it (a batch of thousands: the scheduler sends the 16 bytes,
-- so Lua does not spell them); returns the `ix` value the caller stores in the new hash
local function ix_new_entry(reg, z, cell, ca, m, zadds, counts)
  local t = zadds[z]
  if t then t[#t + 1] = ca; t[#t + 1] = m else zadds[z] = {ca, m} end
  local c = counts[reg]
  if c then c[cell] = (c[cell] or 0) + 1 else counts[reg] = {[cell] = 1} end
end

-- this call's strings for exec_index_new, each built once (a concatenation costs more than
-- many table lookups): cell → its `ix` value; cell → its bound's name; st → tb → cell (and
-- the accounts' registries and zsets: ix_acct)
local IX_OF, IX_ZNAME, IX_CELLS = {}, {}, {}
-- the account registries' bounds this call's new entries need (ix_raise): the newest created
local IX_BOUNDS = {}

-- `once` (optional): this is the cue's only new execution in the batch, so its entries in the
-- cue's registry are written at once (a ZADD and an HINCRBY) instead of collected: a key that
-- gets one member costs more collected — a table per key, its flush — than written (~9k
-- instructions of ~135k per scheduled execution, callgrind)
local function exec_index_new(pfx, eid, acct, cue, ca, st, tb, zadds, counts, m, once)
  m = m or ix_member(eid)
  local cells = IX_CELLS[st]
  if not cells then cells = {}; IX_CELLS[st] = cells end
  local cell = cells[tb]
  if not cell then
    cell = st .. '||' .. tb; cells[tb] = cell; IX_OF[cell] = cell .. '||'; IX_ZNAME[cell] = 'z' .. cell
  end
  -- the registries of ix_registries(pfx, acct, cue, ''), without building its table (and
  -- without a call to ix_acct once this account's are built: ~1k instructions a scheduled execution)
  local accts = IX_ACCTS[pfx]
  local a = accts and accts[acct] or ix_acct(pfx, acct)
  local az = a[cell]
  if not az then az = a[1] .. '|z|' .. cell; a[cell] = az end
  ix_new_entry(a[1], az, cell, ca, m, zadds, counts)
  -- the account registry's bound of the cell (exec_index_flush): the newest created of the batch
  ix_raise(IX_BOUNDS, a[1], IX_ZNAME[cell], ca)
  local reg = pfx .. 'ix:c:' .. cue
  if once then
    redis.call('ZADD', reg .. '|z|' .. cell, ca, m)
    redis.call('HINCRBY', reg, cell, '1')
  else
    ix_new_entry(reg, reg .. '|z|' .. cell, cell, ca, m, zadds, counts)
  end
  return IX_OF[cell]
end

local function exec_index_flush(counts)
  for reg, c in pairs(counts) do
    -- n as a string: Lua would format a number with "%.14g" (slow); usually 1
    for cell, n in pairs(c) do redis.call('HINCRBY', reg, cell, n == 1 and '1' or string.format('%d', n)) end
  end
  ix_write_bounds(IX_BOUNDS)
  IX_BOUNDS = {}
end

-- a call's start (a Redis function's library outlives its calls: scripts.load_function): the
-- caches of this call's accounts and `ix` values and its pending bounds start empty (the
-- strings of IX_OF, IX_ZNAME and IX_CELLS depend on nothing but a status and a trigger: kept)
local function exec_index_reset()
  IX_ACCTS, IX_PARSED, IX_BOUNDS = {}, {}, {}
end
