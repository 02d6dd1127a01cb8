--[[ notices_finish: finish one notice stream entry — acknowledged and deleted, and when a retry is
  wanted scheduled for it (atomically, so a notice is never lost nor doubled by this step)
  KEYS[1] notices stream  KEYS[2] notice retry zset
  ARGV[1] stream entry id  ARGV[2] retry member "<kind>|<id>|<attempt>[|<event µs>]" ("" = no retry)
  ARGV[3] retry due µs
  returns 1 ]]
redis.call('XACK', KEYS[1], 'notifiers', ARGV[1])
redis.call('XDEL', KEYS[1], ARGV[1])
if ARGV[2] ~= '' then redis.call('ZADD', KEYS[2], ARGV[3], ARGV[2]) end
return 1
