--[[ accounts_cue_partition: note that the account may have cues, so executions, on a partition —
  before the cue is written there, so the bitmap is always a superset (listings read only the
  partitions it names: docs/DESIGN.md "Execution listing indexes")
  KEYS[1] cue_partitions: the account's bitmap (absent: not tracked, left absent: any partition)
  ARGV[1] partition
  returns 1 noted | 0 not tracked ]]
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('SETBIT', KEYS[1], ARGV[1], 1)
return 1
