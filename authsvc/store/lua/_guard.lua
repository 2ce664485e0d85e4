-- Prelude of every script that acts for an authenticated caller (prepended when the
-- script is loaded). KEYS[1] is the account hash `account:{A}`, ARGV[1] the caller's
-- session id ('' for tokens that carry none). The account must exist, be active and
-- not pending, and the session must still exist: a disabled account, a deleted one or
-- a revoked session is refused in the same round trip that serves the request.
local _st = redis.call('HMGET', KEYS[1], 'is_active', 'pending')
if _st[1] ~= '1' or _st[2] == '1' then
  return {'unauthenticated'}
end
-- session:{A}:<sid>, built from account:{A} (see keys.session).
if ARGV[1] ~= '' and redis.call('EXISTS', 'session:' .. string.sub(KEYS[1], 9) .. ':' .. ARGV[1]) == 0 then
  return {'unauthenticated'}
end
