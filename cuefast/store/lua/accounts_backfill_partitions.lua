--[[ accounts_backfill_partitions: give an account without a cue-partition bitmap its bitmap
  (issue 14: accounts older than it, restored accounts), from the partitions its cue indexes and
  execution registries are on (store/account_layout.py computed them after ``created``)
  KEYS[1] cue_partitions: the account's bitmap
  ARGV[1] create: 1 = make the empty bitmap when absent (before the partitions are read: a cue
    create after it sets its own bit), 0 = set the bits
  ARGV[2..] partitions: the bits to set
  returns 1 created / set | 0 the bitmap was there (create: nothing to backfill) ]]
if ARGV[1] == '1' then
  if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
  redis.call('SET', KEYS[1], '')
  return 1
end
for i = 2, #ARGV do redis.call('SETBIT', KEYS[1], ARGV[i], 1) end
return 1
