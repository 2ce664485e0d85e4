-- KEYS: account, sessions zset. ARGV: session_prefix, refresh_prefix, mode, sid.
-- mode 'one': revoke session `sid`; 'others': all but `sid`; 'all': every session.
-- Returns the number of sessions revoked.
local sprefix, rprefix, mode, sid = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
if mode == 'one' then
  if redis.call('ZSCORE', KEYS[2], sid) == false then
    return 0
  end
  revoke_session(KEYS[2], sprefix, rprefix, sid)
  return 1
end
return revoke_all(KEYS[2], sprefix, rprefix, mode == 'others' and sid or '')
