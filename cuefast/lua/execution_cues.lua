--[[ execution_cues: the cue of each of an account's executions on one partition (one call
  instead of one read per execution; batch outcomes need the cues' verification modes)
  KEYS[1] the account's execution index  (execution hashes derived from ARGV[1], same slot)
  ARGV[1] partition key prefix  ARGV[2] account id  ARGV[3..] execution ids
  returns one cue id per execution ("" = no such execution of this account) ]]
local out = {}
for i = 3, #ARGV do
  local e = redis.call('HMGET', ARGV[1] .. 'exec:' .. ARGV[i], 'acct', 'cue')
  out[#out + 1] = (e[1] == ARGV[2] and e[2]) or ''
end
return out
