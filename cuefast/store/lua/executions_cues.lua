--[[ executions_cues: the cue and created time of each of an account's executions on one partition
  (one call instead of one read per execution; batch outcomes need the cues' verification modes
  and the creation month for the usage counters)
  KEYS[1] registry: the account's index registry on the partition (a slot-mate, not read; the
    execution hashes are derived from ARGV[1])
  ARGV[1] prefix: the partition's key prefix
  ARGV[2] account_id
  ARGV[3..] execution_ids
  returns one "<cue id> <created µs>" per execution ("" = no such execution of this account) ]]
--!flags no-writes
local out = {}
for i = 3, #ARGV do
  local e = redis.call('HMGET', ARGV[1] .. 'exec:' .. ARGV[i], 'acct', 'cue', 'ca')
  out[#out + 1] = (e[1] == ARGV[2] and e[2] and (e[2] .. ' ' .. (e[3] or '0'))) or ''
end
return out
