-- KEYS: account, character index, character. ARGV: sid, cap, character id,
-- created_at (ms), then the character's field/value pairs.
if redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[2]) then
  return {'limit'}
end
if redis.call('EXISTS', KEYS[3]) == 1 then
  return {'collision'}
end
-- The index score orders the list: the creation time, or one past the newest entry when
-- that is not later (two characters in one millisecond, or a clock step back), so the
-- list is always in creation order rather than broken by the random ids.
local score = tonumber(ARGV[4])
local newest = redis.call('ZRANGE', KEYS[2], -1, -1, 'WITHSCORES')
if newest[2] and tonumber(newest[2]) >= score then
  score = tonumber(newest[2]) + 1
end
redis.call('HSET', KEYS[3], unpack(ARGV, 5))
redis.call('ZADD', KEYS[2], score, ARGV[3])
return {'ok'}
