-- KEYS[1] account hash. Deletes it only while it is pending: a failed registration.
if redis.call('HGET', KEYS[1], 'pending') == '1' then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
