-- set_cue_status: move a cue to a final or paused status — its status index, its status, no
-- next run, no due entry. No-op for a missing cue or one already in that status.
--!include dirty
local function set_cue_status(pfx, cue_id, account, status)
  local ck = pfx .. 'cue:' .. cue_id
  local cur = redis.call('HGET', ck, 'status')
  if not cur or cur == status then return end
  local score = redis.call('HGET', ck, 'ca')
  redis.call('ZREM', pfx .. 'idx:' .. account .. ':cues:' .. cur, cue_id)
  redis.call('ZADD', pfx .. 'idx:' .. account .. ':cues:' .. status, score, cue_id)
  redis.call('HSET', ck, 'status', status, 'nr', '')
  dirty(ck)
  redis.call('ZREM', pfx .. 'due', cue_id)
end
