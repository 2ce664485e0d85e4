-- KEYS[1] account hash, then further keys of its slot (its identities). Deletes them
-- only while the account is pending: a failed registration.
if redis.call('HGET', KEYS[1], 'pending') == '1' then
  redis.call('DEL', unpack(KEYS))
  return 1
end
return 0
