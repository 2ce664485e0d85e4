-- KEYS: account, character index. ARGV: sid, character key prefix.
-- Oldest first; the characters share the account's hash tag, so one slot serves all.
local ids = redis.call('ZRANGE', KEYS[2], 0, -1)
local out = {'ok'}
for _, id in ipairs(ids) do
  out[#out + 1] = redis.call('HGETALL', ARGV[2] .. id)
end
return out
