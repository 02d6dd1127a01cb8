--[[ executions_cues: the cue and created time of each of an account's executions on one partition
  (one call instead of one read per execution; batch outcomes need the cues' verification modes
  and the creation month for the usage counters)
  KEYS[1] the account's execution index  (execution hashes derived from ARGV[1], same slot)
  ARGV[1] partition key prefix  ARGV[2] account id  ARGV[3..] execution ids
  returns one "<cue id> <created µs>" per execution ("" = no such execution of this account) ]]
local out = {}
for i = 3, #ARGV do
  local e = redis.call('HMGET', ARGV[1] .. 'exec:' .. ARGV[i], 'acct', 'cue', 'ca')
  out[#out + 1] = (e[1] == ARGV[2] and e[2] and (e[2] .. ' ' .. (e[3] or '0'))) or ''
end
return out
