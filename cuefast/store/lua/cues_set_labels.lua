--[[ cues_set_labels: a cue's entries in its account's label index (docs/DESIGN.md "Cue labels")
  KEYS[1] labels: the account's hash, cue id → "<written µs>,<k>=<v>,…" (the pairs the index
    holds for that cue; keys and values never contain ',' or '=': cue_input.LABEL_KEY)
  ARGV[1] now: µs
  ARGV[2] prefix: "<pfx>:{a:<acct>}:lbl:", the index zsets' prefix: "<prefix><k>=<v>" (cues with
    that label) and "<prefix><k>" (cues with that key), cue id → the cue's created µs; same slot
  ARGV[3] cue_id
  ARGV[4] score: the cue's created µs
  ARGV[5] mode: 'add' index these pairs too (the index may then hold more than the cue: it is
    the step before the cue's write) | 'set' index exactly these (the step after it) | 'set_if'
    index exactly ARGV[7..] if the cue's hash value is still ARGV[6] (a reader's repair of an
    entry a crash left behind: it never undoes a write it did not see)
  ARGV[6..] pairs: 'k=v' each ('set_if': the value read, then the pairs)
  returns the number of index entries added plus removed ]]
local prefix, id = ARGV[2], ARGV[3]
local mode = ARGV[5]
local raw = redis.call('HGET', KEYS[1], id)
local cur = {}
if raw then
  local comma = string.find(raw, ',', 1, true)
  if comma then
    for pair in string.gmatch(string.sub(raw, comma + 1), '[^,]+') do cur[pair] = true end
  end
end
local want = {}
if mode == 'set_if' then
  if (raw or '') ~= ARGV[6] then return 0 end
  for i = 7, #ARGV do want[ARGV[i]] = true end
else
  if mode == 'add' then for pair in pairs(cur) do want[pair] = true end end
  for i = 6, #ARGV do want[ARGV[i]] = true end
end
local function key_of(pair) return string.sub(pair, 1, string.find(pair, '=', 1, true) - 1) end
local cur_keys, want_keys = {}, {}
for pair in pairs(cur) do cur_keys[key_of(pair)] = true end
for pair in pairs(want) do want_keys[key_of(pair)] = true end
local n = 0
for pair in pairs(cur) do
  if not want[pair] then n = n + redis.call('ZREM', prefix .. pair, id) end
end
for k in pairs(cur_keys) do
  if not want_keys[k] then n = n + redis.call('ZREM', prefix .. k, id) end
end
local list = {}
for pair in pairs(want) do
  list[#list + 1] = pair
  if not cur[pair] then n = n + redis.call('ZADD', prefix .. pair, ARGV[4], id) end
end
for k in pairs(want_keys) do
  if not cur_keys[k] then n = n + redis.call('ZADD', prefix .. k, ARGV[4], id) end
end
if #list == 0 then
  redis.call('HDEL', KEYS[1], id)
else
  table.sort(list)
  redis.call('HSET', KEYS[1], id, ARGV[1] .. ',' .. table.concat(list, ','))
end
return n
