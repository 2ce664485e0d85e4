-- KEYS[1] account hash. Ends a registration: only a still-pending account becomes
-- live. An account that is live already counts as activated: the caller's own
-- activation ran but its reply was lost, and the client retried it. Returns 0 when a
-- competing registration abandoned (deleted) the account meanwhile.
local pending = redis.call('HGET', KEYS[1], 'pending')
if pending == '1' then
  redis.call('HDEL', KEYS[1], 'pending')
  return 1
end
if pending == false and redis.call('EXISTS', KEYS[1]) == 1 then
  return 1
end
return 0
