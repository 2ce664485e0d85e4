-- KEYS: index. ARGV: high bound ('+' or '(member'), count, record prefix.
-- Newest first: returns {member, {field, value, ...}, member, {...}, ...}.
local members = redis.call('ZREVRANGEBYLEX', KEYS[1], ARGV[1], '-', 'LIMIT', 0, tonumber(ARGV[2]))
local out = {}
for _, m in ipairs(members) do
  out[#out + 1] = m
  out[#out + 1] = redis.call('HGETALL', ARGV[3] .. string.sub(m, 15))
end
return out
