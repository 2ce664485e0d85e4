-- KEYS[1] account hash, then further keys of its slot (its identities); ARGV[1] cutoff
-- (ms). Deletes a registration that stayed pending since before the cutoff (its process
-- crashed or stalled), so its claims can be taken over. Returns 1 if the account is
-- gone now, 0 if it is live or young.
local state = redis.call('HMGET', KEYS[1], 'pending', 'created_at')
if state[1] == false and state[2] == false then
  return 1
end
if state[1] == '1' and tonumber(state[2]) < tonumber(ARGV[1]) then
  redis.call('DEL', unpack(KEYS))
  return 1
end
return 0
