-- KEYS: account hash, its old roles set (`user:{A}:roles`). A local account's roles
-- move into its `roles` field (merged with any there, sorted); the set goes. Returns
-- the roles moved, or -1 when there was no set.
if redis.call('EXISTS', KEYS[2]) == 0 then
  return -1
end
local moved = redis.call('SMEMBERS', KEYS[2])
if redis.call('EXISTS', KEYS[1]) == 1 then
  local roles, seen = {}, {}
  for role in string.gmatch(redis.call('HGET', KEYS[1], 'roles') or '', '%S+') do
    seen[role] = true
    roles[#roles + 1] = role
  end
  for _, role in ipairs(moved) do
    if not seen[role] then
      seen[role] = true
      roles[#roles + 1] = role
    end
  end
  if #roles > 0 then
    table.sort(roles)
    redis.call('HSET', KEYS[1], 'roles', table.concat(roles, ' '))
  end
end
redis.call('DEL', KEYS[2])
return #moved
