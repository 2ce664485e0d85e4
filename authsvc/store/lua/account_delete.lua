-- KEYS[1] account hash `account:{A}`, then further keys of its slot to delete with it
-- (its identities). Deletes the account and every key of its slot:
-- characters, sessions and refresh tokens, API keys, known addresses, its
-- activity index. Returns {username, email, created_at, role, ...}
-- for the caller to release the claims and index entries (other slots), or {} when
-- there was no account. (Needs the _sessions prelude.)
local tag = string.sub(KEYS[1], 9)
local acc = redis.call('HMGET', KEYS[1], 'username', 'email', 'created_at', 'roles')
if not acc[1] then
  return {}
end
local chars = 'account:' .. tag .. ':characters'
for _, cid in ipairs(redis.call('ZRANGE', chars, 0, -1)) do
  redis.call('DEL', 'character:' .. tag .. ':' .. cid)
end
local sessions = 'account:' .. tag .. ':sessions'
revoke_all(sessions, 'session:' .. tag .. ':', 'refresh:' .. tag .. ':', '')
local apikeys = 'user:' .. tag .. ':apikeys'
for _, kid in ipairs(redis.call('ZRANGE', apikeys, 0, -1)) do
  redis.call('DEL', 'apikey:' .. tag .. ':' .. kid)
end
local out = {acc[1], acc[2], acc[3]}
for role in string.gmatch(acc[4] or '', '%S+') do
  out[#out + 1] = role
end
redis.call('DEL', KEYS[1], chars, sessions, apikeys,
           'account:' .. tag .. ':known_ips', 'user:' .. tag .. ':activity')
for i = 2, #KEYS do
  redis.call('DEL', KEYS[i])
end
return out
