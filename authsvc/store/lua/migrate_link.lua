-- KEYS: account, the old link key (`account:{A}:verify` or `:reset`, a hash with a TTL).
-- ARGV: the account field, its value (computed by the caller from the old key).
-- A link the account already holds in the new field is newer: it is kept. Returns 1
-- when the old key was moved (or dropped), 0 when it was already gone.
if redis.call('EXISTS', KEYS[2]) == 0 then
  return 0
end
if redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2])
end
redis.call('DEL', KEYS[2])
return 1
