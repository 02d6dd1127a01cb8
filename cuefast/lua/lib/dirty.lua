-- dirty: note that the object stored at `key` changed, for the snapshotter (docs/DESIGN.md
-- "Snapshots, retention and restore"). `key` is an object hash of this slot — `<pfx>:{pNN}:exec:<id>`,
-- `…:cue:<id>`, `<pfx>:{auth}:acct:<id>` — and its slot's dirty set `<pfx>:{…}:dirty` gets the
-- key's tail (`exec:<id>`, `cue:<id>`, `acct:<id>`): same slot, so cluster-safe, and the member is
-- all the snapshotter needs to read the object back. A deleted object is marked the same way.
local function dirty(key)
  local pfx, tail = string.match(key, '^(.-}:)(.+)$')
  redis.call('SADD', pfx .. 'dirty', tail)
end
