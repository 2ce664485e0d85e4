-- Take a single-use string: read and delete it in one step, so of two takers exactly one
-- gets it. KEYS[1] the key. Returns {value, ms it had left} or {} when absent.
local value = redis.call('GET', KEYS[1])
if not value then
  return {}
end
local ttl = redis.call('PTTL', KEYS[1])
redis.call('DEL', KEYS[1])
return {value, ttl}
