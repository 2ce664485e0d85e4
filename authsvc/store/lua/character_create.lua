-- KEYS: account, character index, character. ARGV: sid, cap, character id,
-- created_at (ms, the index score), then the character's field/value pairs.
if redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[2]) then
  return {'limit'}
end
if redis.call('EXISTS', KEYS[3]) == 1 then
  return {'collision'}
end
redis.call('HSET', KEYS[3], unpack(ARGV, 5))
redis.call('ZADD', KEYS[2], ARGV[4], ARGV[3])
return {'ok'}
