-- KEYS[1] `user:{sub}`. ARGV: display_name, email, now_ms.
-- Creates the users record of an external user on first sight, and syncs display name
-- and email when the token's claims change. Returns 1 created, 2 updated, 0 unchanged.
local cur = redis.call('HMGET', KEYS[1], 'created_at', 'display_name', 'email')
if not cur[1] then
  redis.call('HSET', KEYS[1], 'user_id', string.sub(KEYS[1], 7, -2), 'display_name', ARGV[1],
             'email', ARGV[2], 'created_at', ARGV[3], 'updated_at', ARGV[3], 'is_active', '1')
  return 1
end
if cur[2] ~= ARGV[1] or cur[3] ~= ARGV[2] then
  redis.call('HSET', KEYS[1], 'display_name', ARGV[1], 'email', ARGV[2], 'updated_at', ARGV[3])
  return 2
end
return 0
