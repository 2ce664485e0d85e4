-- KEYS[1] claim; ARGV[1] the stale account id seen; ARGV[2] the new account id.
-- Compare-and-set, so of two takers of one stale claim exactly one wins.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2])
  return 1
end
return 0
