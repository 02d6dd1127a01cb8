--[[ notices_finish: finish one notice stream entry — acknowledged and deleted, and when a retry is
  wanted scheduled for it (atomically, so a notice is never lost nor doubled by this step)
  KEYS[1] notices: stream
  KEYS[2] retries: zset, "<kind>|<id>|<attempt>[|<event µs>]" → due µs
  ARGV[1] group: the notices' consumer group
  ARGV[2] entry_id: the stream entry
  ARGV[3] retry: the retry member ("" = no retry)
  ARGV[4] due: the retry's due µs
  returns OK ]]
redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
redis.call('XDEL', KEYS[1], ARGV[2])
if ARGV[3] ~= '' then redis.call('ZADD', KEYS[2], ARGV[4], ARGV[3]) end
return STATUS.OK
