-- KEYS[1] account hash. ARGV: 'grant' or 'revoke', the role. A local account's roles
-- are the space-separated `roles` field of its hash (a set of its own would cost ~190
-- bytes an account). Returns 1 if changed, 0 if it already was so, -1 if there is no
-- account (it is not recreated as a stub).
if redis.call('EXISTS', KEYS[1]) == 0 then
  return -1
end
local roles, found = {}, false
for role in string.gmatch(redis.call('HGET', KEYS[1], 'roles') or '', '%S+') do
  if role == ARGV[2] then
    found = true
  end
  if role ~= ARGV[2] or ARGV[1] == 'grant' then
    roles[#roles + 1] = role
  end
end
if found == (ARGV[1] == 'grant') then
  return 0
end
if ARGV[1] == 'grant' then
  roles[#roles + 1] = ARGV[2]
end
if #roles == 0 then
  redis.call('HDEL', KEYS[1], 'roles')
else
  table.sort(roles)
  redis.call('HSET', KEYS[1], 'roles', table.concat(roles, ' '))
end
return 1
