--[[ cues_reserve_name: claim a cue name for a cue id, unique per account
  KEYS[1] names: the account's cue-names hash (name → "<cue id>:<reserved at, s>")
  ARGV[1] now: µs
  ARGV[2] name
  ARGV[3] cue_id
  ARGV[4] limit_hint: when >= 0 and the account already has that many names, answer COUNT so
    the caller counts exactly (names also cover completed/failed cues, so fewer names than the
    limit proves the limit is not hit); -1 skips the hint
  ARGV[5] replace_if: take the name over only from this value ("" = only if free): a stale
    reservation of a cue that no longer exists is taken over this way
  returns {OK} | {EXISTS, current value} taken | {COUNT} count needed ]]
--!include reserve_name
return reserve_name(KEYS[1], tonumber(ARGV[1]), ARGV[2], ARGV[3], tonumber(ARGV[4]), ARGV[5])
