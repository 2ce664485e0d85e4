-- KEYS[1] the follower's `following` zset. ARGV: target id, now (ms).
-- Returns {added (1/0), score}. The score is the follow's time, or one past the newest
-- follow when that is not later (two follows in one millisecond), so the list keeps the
-- order they were made in rather than the ids' order.
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if score then
  return {0, score}
end
score = tonumber(ARGV[2])
local newest = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
if newest[2] and tonumber(newest[2]) >= score then
  score = tonumber(newest[2]) + 1
end
redis.call('ZADD', KEYS[1], score, ARGV[1])
return {1, tostring(score)}
