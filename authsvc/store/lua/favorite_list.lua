-- KEYS: by-target hash, index. ARGV: high bound ('+' or '(member'), count.
-- Newest first: returns {member, packed record, member, packed record, ...}.
local members = redis.call('ZREVRANGEBYLEX', KEYS[2], ARGV[1], '-', 'LIMIT', 0, tonumber(ARGV[2]))
local out = {}
for _, m in ipairs(members) do
  out[#out + 1] = m
  out[#out + 1] = redis.call('HGET', KEYS[1], string.sub(m, 15))
end
return out
