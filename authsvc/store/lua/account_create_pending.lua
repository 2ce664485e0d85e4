-- KEYS[1] account hash `account:{A}`. ARGV[1] the account's roles (space-separated),
-- then field, value, ... Creates the account in the pending state, its roles in its
-- `roles` field, unless the id is already used.
if redis.call('EXISTS', KEYS[1]) == 1 then
  return 0
end
redis.call('HSET', KEYS[1], unpack(ARGV, 2))
if ARGV[1] ~= '' then
  redis.call('HSET', KEYS[1], 'roles', ARGV[1])
end
return 1
