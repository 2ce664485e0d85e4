-- KEYS: by-target hash, index. ARGV: target id, packed record, index member.
-- Idempotent: a second add of the same target returns the existing record (also under
-- concurrent duplicates: scripts run one at a time). Returns {'created', record} or
-- {'exists', record}.
local existing = redis.call('HGET', KEYS[1], ARGV[1])
if existing then
  return {'exists', existing}
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[2], 0, ARGV[3])
return {'created', ARGV[2]}
