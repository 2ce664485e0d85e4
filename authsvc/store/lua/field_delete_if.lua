-- KEYS[1] hash; ARGV: field, expected value. Deletes the field only while it still holds
-- that value, so a repair never removes what a concurrent request just wrote.
if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then
  return redis.call('HDEL', KEYS[1], ARGV[1])
end
return 0
