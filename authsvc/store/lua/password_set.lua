-- KEYS: account, sessions zset. (Needs the _sessions and _link preludes.)
-- ARGV: new hash, now_ms, session_prefix, refresh_prefix, keep_sid ('' revokes all),
--       the reset link's digest ('' when the caller proved the current password instead).
-- Sets the password, spends any reset token (a changed password voids old links) and
-- revokes the sessions, in one step. Returns the sessions revoked, or -1 when the
-- account is gone or the reset token does not match.
local st = redis.call('HMGET', KEYS[1], 'is_active', 'pending')
if st[1] == false or st[2] == '1' then
  return -1
end
if ARGV[6] ~= '' and not link_matches(KEYS[1], 'reset_link', ARGV[6], ARGV[2]) then
  return -1
end
redis.call('HSET', KEYS[1], 'password', ARGV[1], 'updated_at', ARGV[2])
redis.call('HDEL', KEYS[1], 'reset_link')
return revoke_all(KEYS[2], ARGV[3], ARGV[4], ARGV[5])
