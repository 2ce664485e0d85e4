-- Sign in through an identity. KEYS[1] account hash, KEYS[2] its identities hash.
-- ARGV[1] the identity's field (`<kind>:<digest>`), ARGV[2] now_ms.
-- The account must be live (not pending) and still hold the identity (a claim is only a
-- pointer: its account's entry is the truth). Stamps the account's last_login_at and
-- the identity's last use. Returns {'ok', username, roles, entry JSON, roles asserted}
-- | {'disabled'} | {'gone'}.
local st = redis.call('HMGET', KEYS[1], 'is_active', 'pending', 'username', 'roles')
if not st[1] or st[2] == '1' then
  return {'gone'}
end
local entry = redis.call('HGET', KEYS[2], ARGV[1])
if not entry then
  return {'gone'}
end
if st[1] ~= '1' then
  return {'disabled'}
end
redis.call('HSET', KEYS[1], 'last_login_at', ARGV[2])
redis.call('HSET', KEYS[2], ARGV[1] .. ':used', ARGV[2])
return {'ok', st[3] or '', st[4] or '', entry, redis.call('HGET', KEYS[2], ARGV[1] .. ':roles') or ''}
