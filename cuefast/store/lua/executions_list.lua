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
    "<pfx>:{pNN}:exec:" — the hashes of the page's members come back too (one round trip)
  ARGV[5] rows_from: the rank (0-based) of the page's first member (the listing's offset)
  ARGV[6..] statuses: any of these (none = any status)
  returns {total, earliest claimed_at µs ("" = none), rows: {HGETALL of each member from rank
    rows_from on, {} when gone} ({} without ARGV[4]), then id, created µs, … up to depth pairs,
    newest first (ties: id descending)} ]]
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
local lists = {}  -- per matching cell: its newest members, flat {member, created, …}, newest first
for i = 1, #cells, 2 do
  local cell = cells[i]
  local st, os, tb = string.match(cell, '^([^|#]*)|([^|]*)|(.*)$')
  if st and (statuses == nil or statuses[st])
      and (want_os == '' or want_os == '=' .. os)
      and (want_tb == '' or want_tb == '=' .. tb or (tb == '' and want_tb == '=scheduled')) then
    total = total + tonumber(cells[i + 1])
    if claimed[cell] then
      local first = redis.call('ZRANGE', reg .. '|c|' .. cell, 0, 0, 'WITHSCORES')
      if first[2] and (oldest == nil or tonumber(first[2]) < oldest) then oldest = tonumber(first[2]) end
    end
    if depth > 0 then
      local members = redis.call('ZREVRANGE', reg .. '|z|' .. cell, 0, depth - 1, 'WITHSCORES')
      if #members > 0 then lists[#lists + 1] = members end
    end
  end
end
local rows = {}
local out = {total, oldest and string.format('%d', oldest) or '', rows}
-- merge the cells' lists (each already newest first, ties by id descending, as ZREVRANGE orders
-- them): O(depth × matching cells), no sort
local at = {}
for j = 1, #lists do at[j] = 1 end
for _ = 1, depth do
  local best, bs, bid = nil, nil, nil
  for j = 1, #lists do
    local l, a = lists[j], at[j]
    if a < #l then
      local s, id = tonumber(l[a + 1]), l[a]
      if best == nil or s > bs or (s == bs and ix_id(id) > ix_id(bid)) then best, bs, bid = j, s, id end
    end
  end
  if best == nil then break end
  local id = ix_id(bid)
  if rows_prefix ~= '' and (#out - 3) / 2 >= rows_from then
    rows[#rows + 1] = redis.call('HGETALL', rows_prefix .. id)
  end
  out[#out + 1] = id
  out[#out + 1] = lists[best][at[best] + 1]
  at[best] = at[best] + 2
end
return out
