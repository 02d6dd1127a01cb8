--[[ executions_list: one registry's part of an executions listing (lua/lib/exec_index.lua) — the
  newest members of the cells that match the filters, their count and their earliest claimed_at;
  the work is per cell that can hold them (the cells' bounds tell which), never per execution
  KEYS[1] registry: hash, cell "<st>|<os>|<tb>" → executions in it, "#<cell>" → those with a
    claimed_at (its zsets and its bounds zset "<registry>|b" are slot-mates)
  ARGV[1] depth: how many of the newest to return (the listing's offset + limit)
  ARGV[2] outcome_state: "" = any, else "=" followed by the value
  ARGV[3] triggered_by: "" = any, else "=" followed by the value ("=scheduled" also matches the
    stored "", which means scheduled)
  ARGV[4] rows: "" = ids only; else the registry's partition's execution key prefix
    "<pfx>:{pNN}:exec:" — the page alone comes back, with its members' hashes (one round trip)
  ARGV[5] rows_from: the rank (0-based) of the page's first member (the listing's offset)
  ARGV[6] after: "" = from the newest; else "<created µs> <id>", a keyset cursor: only members
    after it in the order (older, or as old with a smaller id) count as ranks
  ARGV[7..] statuses: any of these (none = any status)
  returns {total, earliest claimed_at µs ("" = none), rows, members…}: without ARGV[4], rows is
    {} and the members are id, created µs, … up to depth pairs, newest first (ties: id
    descending); with it, rows holds each member of the page's hash (ranks rows_from to
    depth - 1) as the JSON array of its HGETALL's fields and values ("" when gone: one string
    per row, 20 reply strings for a page and not 20 × 40) and the members are the page's ids
    alone, in the same order ]]
--!flags no-writes
--!include exec_index
local depth = tonumber(ARGV[1])
local want_os, want_tb = ARGV[2], ARGV[3]
local rows_prefix, rows_from = ARGV[4], tonumber(ARGV[5])
local after_text, after_id = string.match(ARGV[6], '^(%d+) (.+)$')
local after_s = after_text and tonumber(after_text)
local statuses = nil
if #ARGV > 6 then
  statuses = {}
  for i = 7, #ARGV do statuses[ARGV[i]] = true end
end
local reg = KEYS[1]
local cells = redis.call('HGETALL', reg)
local total, oldest = 0, nil
local claimed = {}  -- cell → executions with a claimed_at ("#<cell>" fields)
for i = 1, #cells, 2 do
  if string.byte(cells[i]) == 35 then claimed[string.sub(cells[i], 2)] = true end  -- '#'
end
local matching, held = {}, {}  -- the matching cells, and those of them with a claimed_at
local count = {}  -- cell → how many members its zset holds
local any = statuses == nil and want_os == '' and want_tb == ''  -- no filter: every cell matches
for i = 1, #cells, 2 do
  local cell = cells[i]
  local ok = any and string.byte(cell) ~= 35
  if not any then
    local st, os, tb = string.match(cell, '^([^|#]*)|([^|]*)|(.*)$')
    ok = st and (statuses == nil or statuses[st])
      and (want_os == '' or want_os == '=' .. os)
      and (want_tb == '' or want_tb == '=' .. tb or (tb == '' and want_tb == '=scheduled'))
  end
  if ok then
    local n = tonumber(cells[i + 1])
    total = total + n
    matching[#matching + 1] = cell
    count[cell] = n
    if claimed[cell] then held[#held + 1] = cell end
  end
end
-- the cells' bounds (lib/exec_index.lua; an account's or a worker's registry has them), those
-- of the cells to choose among alone (one ZMSCORE): newest created ≤ zb[cell], oldest claimed_at
-- ≥ cb[cell]; a cell without one may hold anything
local zb, cb = {}, {}
local nz = #matching > 1 and #matching or 0
local nc = #held > 1 and #held or 0
if nz + nc > 0 then
  local names = {}
  for i = 1, nz do names[i] = 'z' .. matching[i] end
  for i = 1, nc do names[nz + i] = 'c' .. held[i] end
  local b = redis.call('ZMSCORE', reg .. '|b', unpack(names))
  for i = 1, nz do
    if b[i] then zb[matching[i]] = tonumber(b[i]) end
  end
  for i = 1, nc do
    if b[nz + i] then cb[held[i]] = -tonumber(b[nz + i]) end
  end
end
-- the earliest claimed_at: the cells' heads by lower bound, lowest first (no bound: before
-- any), until the earliest found is no later than the lowest bound left (none of the rest can
-- be earlier); a pass over what is left picks each (no sort: a few cells are read)
local left = #held
while left > 0 do
  local k, lb = 1, cb[held[1]] or -math.huge
  for i = 2, left do
    local b = cb[held[i]] or -math.huge
    if b < lb then k, lb = i, b end
  end
  if oldest and lb >= oldest then break end
  local first = redis.call('ZRANGE', reg .. '|c|' .. held[k], 0, 0, 'WITHSCORES')
  if first[2] and (oldest == nil or tonumber(first[2]) < oldest) then oldest = tonumber(first[2]) end
  held[k] = held[left]
  left = left - 1
end
local zsets, ubs, sizes = {}, {}, {}  -- per matching cell: its zset, bound (+inf: none), size
for j, cell in ipairs(matching) do
  zsets[j] = reg .. '|z|' .. cell
  ubs[j] = zb[cell] or math.huge
  if after_s and ubs[j] > after_s then ubs[j] = after_s end  -- past the cursor: no newer than it
  sizes[j] = count[cell]
end
local rows = {}
-- a member's hash as one JSON text ("" when gone)
local function row(id)
  local h = redis.call('HGETALL', rows_prefix .. id)
  if #h == 0 then return '' end
  return cjson.encode(h)
end
local out = {total, oldest and string.format('%d', oldest) or '', rows}
local page = rows_prefix ~= ''
if depth <= rows_from or #zsets == 0 then return out end
if page and #zsets == 1 and not after_s then  -- one cell: the page is one range of its zset, nothing to merge
  local members = redis.call('ZREVRANGE', zsets[1], rows_from, depth - 1)
  for j = 1, #members do
    local id = ix_id(members[j])
    rows[j] = row(id)
    out[j + 3] = id
  end
  return out
end
-- merge the cells (each zset read newest first, ties by id descending, as ZREVRANGE orders
-- them), lazily: a cell is opened only once its bound is no older than the merge's next member
-- (so a cell whose newest cannot be in the page is never read: the cells read grow with what
-- the page holds, not with the cells the account has populated), then its newest depth / cells,
-- and more of it only when the merge has used what was read of it (then all the merge may
-- still need) — the members read grow with depth plus the cells, not depth × cells. The open
-- cells' heads sit in a binary heap, so each rank costs ~log2(cells) comparisons instead of a
-- pass over every cell; ids spelled only for ties and for what is returned
local chunk = math.ceil(depth / #zsets)
local lists, at, read = {}, {}, {}  -- per cell: members read {member, created, …}, cursor, count
local hs = {}  -- per cell: its head's created µs (the member is lists[j][at[j]])
local rank = 0
-- cell j's next member in place (read on when what was read is used up); false: no more
local function advance(j)
  while true do
    local l = lists[j]
    if at[j] > #l then
      if read[j] >= sizes[j] then return false end
      local more = math.max(chunk, depth - rank)
      l = redis.call('ZREVRANGE', zsets[j], read[j], read[j] + more - 1, 'WITHSCORES')
      if #l == 0 then return false end
      lists[j], at[j] = l, 1
      read[j] = read[j] + #l / 2
    end
    local s = tonumber(l[at[j] + 1])
    -- a member as old as the cursor: past it only with a smaller id
    if s ~= after_s or ix_id(l[at[j]]) < after_id then
      hs[j] = s
      return true
    end
    at[j] = at[j] + 2
  end
end
-- cell a's head comes before cell b's (newer; a tie by id descending)
local function before(a, b)
  local sa, sb = hs[a], hs[b]
  if sa ~= sb then return sa > sb end
  return ix_id(lists[a][at[a]]) > ix_id(lists[b][at[b]])
end
local heap, n = {}, 0
local function down(i)
  while true do
    local l, r, top = 2 * i, 2 * i + 1, i
    if l <= n and before(heap[l], heap[top]) then top = l end
    if r <= n and before(heap[r], heap[top]) then top = r end
    if top == i then return end
    heap[i], heap[top] = heap[top], heap[i]
    i = top
  end
end
-- the cells opened are zsets[1..opened]; pick() moves the unopened one with the highest bound
-- to opened + 1 (a pass over the unopened: no sort, as only a few are opened)
local opened = 0
local function pick()
  local o = opened + 1
  local k = o
  for j = o + 1, #zsets do
    if ubs[j] > ubs[k] then k = j end
  end
  if k ~= o then
    zsets[o], zsets[k] = zsets[k], zsets[o]
    ubs[o], ubs[k] = ubs[k], ubs[o]
    sizes[o], sizes[k] = sizes[k], sizes[o]
  end
end
-- open the next cells while one may hold a member as new as the heap's head or newer (a bound
-- equal to it too: a tie goes by id), or while the heap is empty
local function open()
  while opened < #zsets and (n == 0 or ubs[opened + 1] >= hs[heap[1]]) do
    opened = opened + 1
    local j = opened
    if opened < #zsets then pick() end
    -- with a cursor, a cell starts at its first member not newer than it
    local from = after_s and redis.call('ZCOUNT', zsets[j], '(' .. after_text, '+inf') or 0
    local take = math.min(chunk, sizes[j] - from)
    lists[j] = take > 0 and redis.call('ZREVRANGE', zsets[j], from, from + take - 1, 'WITHSCORES') or {}
    at[j] = 1
    read[j] = from + #lists[j] / 2
    if advance(j) then
      n = n + 1
      heap[n] = j
      local i = n  -- up the heap
      while i > 1 do
        local p = math.floor(i / 2)
        if not before(heap[i], heap[p]) then break end
        heap[i], heap[p] = heap[p], heap[i]
        i = p
      end
    end
  end
end
pick()
open()
while rank < depth and n > 0 do
  local best = heap[1]
  local l, a = lists[best], at[best]
  if not page then
    out[#out + 1] = ix_id(l[a])
    out[#out + 1] = l[a + 1]
  elseif rank >= rows_from then
    local id = ix_id(l[a])
    rows[#rows + 1] = row(id)
    out[#out + 1] = id
  end
  at[best] = a + 2
  rank = rank + 1
  if rank >= depth then break end  -- the page is full: read no further (no ZREVRANGE for nothing)
  if not advance(best) then
    heap[1] = heap[n]
    heap[n] = nil
    n = n - 1
  end
  down(1)
  open()
end
return out
