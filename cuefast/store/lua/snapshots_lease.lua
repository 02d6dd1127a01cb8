--[[ snapshots_lease: the one-active-snapshotter lease
  KEYS[1] the lease key
  ARGV[1] "acquire" | "renew" | "release"  ARGV[2] this snapshotter's token  ARGV[3] lease ms
  returns 1 held by this token afterwards (released: 1 when it was ours) | 0 another one holds it ]]
local cur = redis.call('GET', KEYS[1])
if ARGV[1] == 'release' then
  if cur == ARGV[2] then redis.call('DEL', KEYS[1]); return 1 end
  return 0
end
if cur == ARGV[2] then
  redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[3]))
  return 1
end
if cur or ARGV[1] == 'renew' then return 0 end
redis.call('SET', KEYS[1], ARGV[2], 'PX', tonumber(ARGV[3]))
return 1
