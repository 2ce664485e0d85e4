-- KEYS[1] account hash; ARGV: field, value, field, value, ...
-- Creates the account in the pending state unless the id is already used.
if redis.call('EXISTS', KEYS[1]) == 1 then
  return 0
end
redis.call('HSET', KEYS[1], unpack(ARGV))
return 1
