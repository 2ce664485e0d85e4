-- Prelude of every script that acts for an authenticated caller (prepended when the
-- script is loaded; store/connection.py GuardedStep). KEYS[1] is the account hash, the
-- LAST key the caller's session hash (the account hash again when the token carries no
-- session), ARGV[1] the caller's session id ('' for none). The account must exist, be
-- active and not pending, and the session must still exist: a disabled account, a
-- deleted one or a revoked session is refused in the same round trip that serves the
-- request.
local _st = redis.call('HMGET', KEYS[1], 'is_active', 'pending')
if _st[1] ~= '1' or _st[2] == '1' then
  return {'unauthenticated'}
end
if ARGV[1] ~= '' and redis.call('EXISTS', KEYS[#KEYS]) == 0 then
  return {'unauthenticated'}
end
