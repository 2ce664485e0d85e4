-- KEYS: account, sessions zset. ARGV: sid, session_prefix. Oldest first; entries whose
-- session expired by TTL are skipped (the next login prunes them).
local out = {'ok'}
for _, sid in ipairs(redis.call('ZRANGE', KEYS[2], 0, -1)) do
  local s = redis.call('HGETALL', ARGV[2] .. sid)
  if #s > 0 then
    s[#s + 1] = 'id'
    s[#s + 1] = sid
    out[#out + 1] = s
  end
end
return out
