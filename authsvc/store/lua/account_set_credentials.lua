-- KEYS[1] account (guarded: ARGV[1] the caller's sid). ARGV: sid, expected username,
-- expected email, new username, new email, password hash, email_verified ('1'/'0'),
-- now_ms. Sets all three at once, only while the account has no password yet and still
-- holds the values the caller read. Returns {'ok'} | {'credentials_set'} | {'gone'}.
local cur = redis.call('HMGET', KEYS[1], 'password', 'username', 'email')
if (cur[1] or '') ~= '' then
  return {'credentials_set'}
end
if (cur[2] or '') ~= ARGV[2] or (cur[3] or '') ~= ARGV[3] then
  return {'gone'}
end
redis.call('HSET', KEYS[1], 'username', ARGV[4], 'email', ARGV[5], 'password', ARGV[6],
           'email_verified', ARGV[7], 'updated_at', ARGV[8])
return {'ok'}
