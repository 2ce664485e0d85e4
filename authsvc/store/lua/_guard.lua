-- Prelude of every script that acts for an authenticated account (prepended when the
-- script is loaded). KEYS[1] is the account hash, ARGV[1] the caller's session id
-- ('' for tokens that carry none). The account must exist, be active and not pending:
-- a token outliving its account or a disabled account is refused in the same round
-- trip that serves the request.
local _st = redis.call('HMGET', KEYS[1], 'is_active', 'pending')
if _st[1] ~= '1' or _st[2] == '1' then
  return {'unauthenticated'}
end
