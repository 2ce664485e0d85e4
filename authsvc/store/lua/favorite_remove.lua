-- KEYS: by-target hash, index. ARGV: target id.
-- Returns {'removed', packed record} or {'missing'}.
local record = redis.call('HGET', KEYS[1], ARGV[1])
if not record then
  return {'missing'}
end
redis.call('HDEL', KEYS[1], ARGV[1])
-- The record starts with the 13-digit creation time the index member starts with.
redis.call('ZREM', KEYS[2], string.sub(record, 1, 13) .. ':' .. ARGV[1])
return {'removed', record}
