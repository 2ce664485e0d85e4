-- KEYS: by-target hash, index. ARGV: target id, record prefix.
-- Returns {'removed', field, value, ...} (the removed record) or {'missing'}.
local uuid = redis.call('HGET', KEYS[1], ARGV[1])
if not uuid then
  return {'missing'}
end
local key = ARGV[2] .. uuid
local rec = redis.call('HGETALL', key)
local created = redis.call('HGET', key, 'created_ms')
redis.call('DEL', key)
redis.call('HDEL', KEYS[1], ARGV[1])
if created then
  redis.call('ZREM', KEYS[2], string.format('%013d', tonumber(created)) .. ':' .. uuid)
end
table.insert(rec, 1, 'removed')
return rec
