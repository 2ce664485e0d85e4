-- KEYS: account, sessions zset. ARGV: '1' or '0', now_ms, session_prefix, refresh_prefix.
-- Disabling revokes every session and refresh token in the same step.
if redis.call('EXISTS', KEYS[1]) == 0 then
  return -1
end
redis.call('HSET', KEYS[1], 'is_active', ARGV[1], 'updated_at', ARGV[2])
if ARGV[1] == '0' then
  return revoke_all(KEYS[2], ARGV[3], ARGV[4], '')
end
return 0
