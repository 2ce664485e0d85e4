-- KEYS: by-target hash, index. ARGV: target id, uuid, created index member, record
-- prefix, then the record's field/value pairs. Idempotent: a second add of the same
-- target returns the existing record (also under concurrent duplicates: scripts run one
-- at a time). Returns {'created'} or {'exists', field, value, ...}.
local existing = redis.call('HGET', KEYS[1], ARGV[1])
if existing then
  local rec = redis.call('HGETALL', ARGV[4] .. existing)
  table.insert(rec, 1, 'exists')
  return rec
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('HSET', ARGV[4] .. ARGV[2], unpack(ARGV, 5))
redis.call('ZADD', KEYS[2], 0, ARGV[3])
return {'created'}
