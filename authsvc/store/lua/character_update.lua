-- KEYS: account, character. ARGV: sid, then field/value pairs to set (maybe none).
if redis.call('EXISTS', KEYS[2]) == 0 then
  return {'not_found'}
end
if #ARGV > 1 then
  redis.call('HSET', KEYS[2], unpack(ARGV, 2))
end
return {'ok', redis.call('HGETALL', KEYS[2])}
