-- KEYS[1] account hash. Ends a registration: only a still-pending account becomes
-- live. Returns 0 when a competing registration abandoned it meanwhile.
if redis.call('HGET', KEYS[1], 'pending') ~= '1' then
  return 0
end
redis.call('HDEL', KEYS[1], 'pending')
return 1
