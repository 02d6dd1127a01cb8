--[[ accounts_upgrade_read: accounts of the layout before the auth shards, read for the upgrade
  (Accounts' layout 3, store/account_layout.py), on the old auth slot
  KEYS[1] keys: the old slot's key map (names the slot)
  ARGV[1] prefix: "<pfx>:{auth}:"
  ARGV[2..] account_ids: the accounts to read
  returns {{id, partitions, field, value, ...}, ...} per id with a hash; partitions "3,7" ("" none),
    "*" no bitmap ]]
--!flags no-writes
local pfx = ARGV[1]
local out = {}
for i = 2, #ARGV do
  local id = ARGV[i]
  local flat = redis.call('HGETALL', pfx .. 'acct:' .. id)
  if #flat > 0 then
    local parts = '*'
    local bits = redis.call('GET', pfx .. 'cparts:' .. id)
    if bits then
      local found = {}
      for b = 1, #bits do
        local byte = string.byte(bits, b)
        for j = 0, 7 do
          if byte >= 128 then found[#found + 1] = (b - 1) * 8 + j end  -- bit 0 is a byte's high bit
          byte = (byte * 2) % 256
        end
      end
      parts = table.concat(found, ',')
    end
    local row = {id, parts}
    for j = 1, #flat do row[j + 2] = flat[j] end
    out[#out + 1] = row
  end
end
return out
