-- dirty: note that the object stored at `key` changed, for the snapshotter (docs/DESIGN.md
-- "Snapshots, retention and restore"). `key` is an object hash of this slot — `<pfx>:{pNN}:exec:<id>`,
-- `…:cue:<id>`, `<pfx>:{aNN}:acct:<id>` — and its slot's dirty set `<pfx>:{…}:dirty` gets the
-- key's tail (`exec:<id>`, `cue:<id>`, `acct:<id>`): same slot, so cluster-safe, and the member is
-- all the snapshotter needs to read the object back. A deleted object is marked the same way.
-- `defer` (optional): collect the marks in a table (dirty set → members) that dirty_flush writes
-- with one SADD per set and 1,000 members, for a batch that marks many objects.
local function dirty_at(pfx, tail, defer)  -- the same, for a key given as its slot prefix
  -- "<pfx>:{…}:" and tail (cheaper inside a batch loop: no pattern match)
  local set = pfx .. 'dirty'
  if defer then
    local t = defer[set]
    if not t then t = {}; defer[set] = t end
    t[#t + 1] = tail
  else
    redis.call('SADD', set, tail)
  end
end

local function dirty(key, defer)
  local pfx, tail = string.match(key, '^(.-}:)(.+)$')
  dirty_at(pfx, tail, defer)
end

-- the deferred marks of slot prefix `pfx` (a table in `defer` that dirty_flush writes): a batch
-- loop appends tails to it directly (no call and no set name built per mark)
local function dirty_batch(pfx, defer)
  local set = pfx .. 'dirty'
  local t = defer[set]
  if not t then t = {}; defer[set] = t end
  return t
end

local function dirty_flush(defer)
  for set, t in pairs(defer) do
    for i = 1, #t, 1000 do redis.call('SADD', set, unpack(t, i, math.min(i + 999, #t))) end
    defer[set] = nil
  end
end
