-- KEYS: account, verification key. ARGV: token hash, now_ms.
-- Single use: the token is deleted as the address is marked verified.
if redis.call('HGET', KEYS[2], 'hash') ~= ARGV[1] or redis.call('EXISTS', KEYS[1]) == 0 then
  return 0
end
redis.call('DEL', KEYS[2])
redis.call('HSET', KEYS[1], 'email_verified', '1', 'updated_at', ARGV[2])
return 1
