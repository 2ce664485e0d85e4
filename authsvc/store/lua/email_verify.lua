-- KEYS: account. ARGV: the link's digest, now_ms. (Needs the _link prelude.)
-- Single use: the link is spent as the address is marked verified.
if not link_matches(KEYS[1], 'verify_link', ARGV[1], ARGV[2]) then
  return 0
end
redis.call('HDEL', KEYS[1], 'verify_link')
redis.call('HSET', KEYS[1], 'email_verified', '1', 'updated_at', ARGV[2])
return 1
