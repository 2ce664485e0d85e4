-- KEYS[1] key; ARGV[1] ms. Gives the key a TTL only if it has none (EXPIRE ... NX is
-- Redis 7 only; KeyDB lacks it).
if redis.call('PTTL', KEYS[1]) == -1 then
  return redis.call('PEXPIRE', KEYS[1], ARGV[1])
end
return 0
