--[[ snapshots_lease: the one-active-snapshotter lease
  KEYS[1] lease: the lease key
  ARGV[1] mode: "acquire" | "renew" | "release"
  ARGV[2] token: this snapshotter's token
  ARGV[3] lease_ms
  returns OK held by this token afterwards (released: OK when it was ours) | BUSY another one
    holds it ]]
local cur = redis.call('GET', KEYS[1])
if ARGV[1] == 'release' then
  if cur == ARGV[2] then redis.call('DEL', KEYS[1]); return STATUS.OK end
  return STATUS.BUSY
end
if cur == ARGV[2] then
  redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[3]))
  return STATUS.OK
end
if cur or ARGV[1] == 'renew' then return STATUS.BUSY end
redis.call('SET', KEYS[1], ARGV[2], 'PX', tonumber(ARGV[3]))
return STATUS.OK
