-- KEYS[1] hash; ARGV: field, value, ... Never resurrects a deleted hash as a stub.
if redis.call('EXISTS', KEYS[1]) == 0 then
  return 0
end
redis.call('HSET', KEYS[1], unpack(ARGV))
return 1
