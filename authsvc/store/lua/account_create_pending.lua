-- KEYS[1] account hash `account:{A}`. ARGV[1] the account's roles (space-separated),
-- then field, value, ... Creates the account in the pending state, with its roles set
-- `user:{A}:roles` (same slot), unless the id is already used.
if redis.call('EXISTS', KEYS[1]) == 1 then
  return 0
end
redis.call('HSET', KEYS[1], unpack(ARGV, 2))
local roles_key = 'user:' .. string.sub(KEYS[1], 9) .. ':roles'
for role in string.gmatch(ARGV[1], '%S+') do
  redis.call('SADD', roles_key, role)
end
return 1
