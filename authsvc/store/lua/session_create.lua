-- A login. KEYS: account, sessions zset, new session hash, its refresh-token set, the
-- refresh token. ARGV: now_ms, ttl_ms, max_sessions, sid, token_hash, session_prefix,
-- refresh_prefix, then the session's field/value pairs.
-- Returns {'ok', evicted sid, ...}: the oldest sessions beyond the cap are revoked.
local st = redis.call('HMGET', KEYS[1], 'is_active', 'pending')
if st[1] ~= '1' or st[2] == '1' then
  return {'unauthenticated'}
end
local now, ttl, max = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local sid, hash, sprefix, rprefix = ARGV[4], ARGV[5], ARGV[6], ARGV[7]
local out = {'ok'}
-- Sessions that expired by their TTL leave a zset entry behind: drop those first.
for _, old in ipairs(redis.call('ZRANGE', KEYS[2], 0, -1)) do
  if redis.call('EXISTS', sprefix .. old) == 0 then
    revoke_session(KEYS[2], sprefix, rprefix, old)
  end
end
while redis.call('ZCARD', KEYS[2]) >= max do
  local oldest = redis.call('ZRANGE', KEYS[2], 0, 0)[1]
  revoke_session(KEYS[2], sprefix, rprefix, oldest)
  out[#out + 1] = oldest
end
redis.call('HSET', KEYS[3], unpack(ARGV, 8))
redis.call('PEXPIRE', KEYS[3], ttl)
redis.call('ZADD', KEYS[2], now, sid)
redis.call('SADD', KEYS[4], hash)
redis.call('PEXPIRE', KEYS[4], ttl)
redis.call('HSET', KEYS[5], 'sid', sid, 'state', 'active', 'created_at', now)
redis.call('PEXPIRE', KEYS[5], ttl)
return out
