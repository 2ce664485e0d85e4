-- KEYS[1] the users record `user:{sub}`, then the other keys of its slot to delete with it
-- (roles, API key index, activity index). ARGV[1] the prefix of its API keys
-- (`apikey:{sub}:`), ARGV[2] the API key index's position in KEYS.
-- Deletes an external user's own keys, its API keys included. Returns the record's
-- created_at ('' when there was no record), for the caller to unlist it.
local created = redis.call('HGET', KEYS[1], 'created_at') or ''
local index = KEYS[tonumber(ARGV[2])]
for _, kid in ipairs(redis.call('ZRANGE', index, 0, -1)) do
  redis.call('DEL', ARGV[1] .. kid)
end
redis.call('DEL', unpack(KEYS))
return created
