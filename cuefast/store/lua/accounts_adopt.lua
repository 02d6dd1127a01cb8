--[[ accounts_adopt: write an account read from the old auth slot into its shard, unless the
  shard has it already (an upgrade running twice, or after the account changed there)
  KEYS[1] account: the account's hash on its shard
  KEYS[2] cue_partitions: its cue-partition bitmap there
  ARGV[1] partitions: "3,7" the bits to set ("" none), "*" = no bitmap (left to the backfill)
  ARGV[2..] fields: field, value pairs
  returns 1 written | 0 there already ]]
--!include dirty
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV, 2))
if ARGV[1] ~= '*' and redis.call('EXISTS', KEYS[2]) == 0 then
  redis.call('SET', KEYS[2], '')
  for p in string.gmatch(ARGV[1], '%d+') do redis.call('SETBIT', KEYS[2], p, 1) end
end
dirty(KEYS[1])
return 1
