-- Spend a refresh token and issue its successor, atomically.
-- KEYS: account, sessions zset, presented token, successor token.
-- ARGV: now_ms, ttl_ms, reuse_window_ms, session_prefix, refresh_prefix,
--       successor_hash, successor_iat, successor_jti.
-- Returns {'rotated', sid, username} | {'reused', sid, username, iat, jti, succ_hash}
-- (the same successor again, within the reuse window) | {'theft', sid} (session
-- revoked) | {'invalid'}.
local now, ttl, window = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local sprefix, rprefix = ARGV[4], ARGV[5]
local rt = redis.call('HMGET', KEYS[3], 'sid', 'state', 'spent_at', 'succ_iat', 'succ_jti',
                      'succ_hash')
local sid, state = rt[1], rt[2]
if not sid then
  return {'invalid'}
end
local st = redis.call('HMGET', KEYS[1], 'is_active', 'pending', 'username')
if st[1] ~= '1' or st[2] == '1' or redis.call('EXISTS', sprefix .. sid) == 0 then
  return {'invalid'}
end
if state == 'spent' then
  if now - tonumber(rt[3]) <= window then
    return {'reused', sid, st[3], rt[4], rt[5], rt[6]}
  end
  revoke_session(KEYS[2], sprefix, rprefix, sid)
  return {'theft', sid}
end
redis.call('HSET', KEYS[3], 'state', 'spent', 'spent_at', ARGV[1], 'succ_iat', ARGV[7],
           'succ_jti', ARGV[8], 'succ_hash', ARGV[6])
redis.call('HSET', KEYS[4], 'sid', sid, 'state', 'active', 'created_at', ARGV[1])
redis.call('PEXPIRE', KEYS[4], ttl)
local tokens_key = sprefix .. sid .. ':refresh'
redis.call('SADD', tokens_key, ARGV[6])
redis.call('PEXPIRE', tokens_key, ttl)
redis.call('HSET', sprefix .. sid, 'last_seen_at', ARGV[1])
redis.call('PEXPIRE', sprefix .. sid, ttl)
return {'rotated', sid, st[3]}
