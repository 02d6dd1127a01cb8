--[[ executions_list: one registry's part of an executions listing (lua/lib/exec_index.lua) — the
  newest members of the cells that match the filters, their count and their earliest claimed_at;
  the work is per matching cell (a few dozen at most), never per execution
  KEYS[1] registry: hash, cell "<st>|<os>|<tb>" → executions in it, "#<cell>" → those with a
    claimed_at (its zsets are slot-mates)
  ARGV[1] depth: how many of the newest to return (the listing's offset + limit)
  ARGV[2] outcome_state: "" = any, else "=" followed by the value
  ARGV[3] triggered_by: "" = any, else "=" followed by the value ("=scheduled" also matches the
    stored "", which means scheduled)
  ARGV[4] rows: "" = ids only; else the registry's partition's execution key prefix
    "<pfx>:{pNN}:exec:" — the page alone comes back, with its members' hashes (one round trip)
  ARGV[5] rows_from: the rank (0-based) of the page's first member (the listing's offset)
  ARGV[6..] statuses: any of these (none = any status)
  returns {total, earliest claimed_at µs ("" = none), rows, members…}: without ARGV[4], rows is
    {} and the members are id, created µs, … up to depth pairs, newest first (ties: id
    descending); with it, rows holds the HGETALL of each member of the page (ranks rows_from to
    depth - 1; {} when gone) and the members are the page's ids alone, in the same order ]]
--!include exec_index
local depth = tonumber(ARGV[1])
local want_os, want_tb = ARGV[2], ARGV[3]
local rows_prefix, rows_from = ARGV[4], tonumber(ARGV[5])
local statuses = nil
if #ARGV > 5 then
  statuses = {}
  for i = 6, #ARGV do statuses[ARGV[i]] = true end
end
local reg = KEYS[1]
local cells = redis.call('HGETALL', reg)
local total, oldest = 0, nil
local claimed = {}  -- cell → executions with a claimed_at ("#<cell>" fields)
for i = 1, #cells, 2 do
  if string.byte(cells[i]) == 35 then claimed[string.sub(cells[i], 2)] = true end  -- '#'
end
local zsets, sizes = {}, {}  -- the matching cells' zsets and how many members each holds
for i = 1, #cells, 2 do
  local cell = cells[i]
  local st, os, tb = string.match(cell, '^([^|#]*)|([^|]*)|(.*)$')
  if st and (statuses == nil or statuses[st])
      and (want_os == '' or want_os == '=' .. os)
      and (want_tb == '' or want_tb == '=' .. tb or (tb == '' and want_tb == '=scheduled')) then
    local n = tonumber(cells[i + 1])
    total = total + n
    if claimed[cell] then
      local first = redis.call('ZRANGE', reg .. '|c|' .. cell, 0, 0, 'WITHSCORES')
      if first[2] and (oldest == nil or tonumber(first[2]) < oldest) then oldest = tonumber(first[2]) end
    end
    zsets[#zsets + 1] = reg .. '|z|' .. cell
    sizes[#sizes + 1] = n
  end
end
local rows = {}
local out = {total, oldest and string.format('%d', oldest) or '', rows}
local page = rows_prefix ~= ''
if depth <= rows_from or #zsets == 0 then return out end
if page and #zsets == 1 then  -- one cell: the page is one range of its zset, nothing to merge
  local members = redis.call('ZREVRANGE', zsets[1], rows_from, depth - 1)
  for j = 1, #members do
    local id = ix_id(members[j])
    rows[j] = redis.call('HGETALL', rows_prefix .. id)
    out[j + 3] = id
  end
  return out
end
-- merge the cells (each zset read newest first, ties by id descending, as ZREVRANGE orders
-- them), lazily: each cell's newest depth / cells first, and more of a cell only when the merge
-- has used what was read of it (then all the merge may still need) — the members read grow
-- with depth plus the cells, not depth × cells; no sort; ids spelled only for what is returned
local chunk = math.ceil(depth / #zsets)
local lists, at, read = {}, {}, {}  -- per cell: members read {member, created, …}, cursor, count
for j = 1, #zsets do
  lists[j] = redis.call('ZREVRANGE', zsets[j], 0, math.min(chunk, sizes[j]) - 1, 'WITHSCORES')
  at[j] = 1
  read[j] = #lists[j] / 2
end
for rank = 0, depth - 1 do
  local best, bs, bm = nil, nil, nil
  for j = 1, #zsets do
    local l, a = lists[j], at[j]
    if a > #l and read[j] < sizes[j] then  -- this cell's read part is used up: read on
      local more = math.max(chunk, depth - rank)
      l = redis.call('ZREVRANGE', zsets[j], read[j], read[j] + more - 1, 'WITHSCORES')
      lists[j], a, at[j] = l, 1, 1
      read[j] = read[j] + #l / 2
    end
    if a < #l then
      local s, m = tonumber(l[a + 1]), l[a]
      if best == nil or s > bs or (s == bs and ix_id(m) > ix_id(bm)) then best, bs, bm = j, s, m end
    end
  end
  if best == nil then break end
  if not page then
    out[#out + 1] = ix_id(bm)
    out[#out + 1] = lists[best][at[best] + 1]
  elseif rank >= rows_from then
    local id = ix_id(bm)
    rows[#rows + 1] = redis.call('HGETALL', rows_prefix .. id)
    out[#out + 1] = id
  end
  at[best] = at[best] + 2
end
return out
