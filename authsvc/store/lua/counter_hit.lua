-- KEYS[1] counter; ARGV[1] window (ms). Counts one hit; the first hit of a window sets
-- the TTL in the same step, so no counter ever lives without one.
local n = redis.call('INCR', KEYS[1])
if n == 1 or redis.call('PTTL', KEYS[1]) < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
end
return n
