-- Does an account (still) hold an identity? KEYS[1] account hash, KEYS[2] its
-- identities hash. ARGV[1] the field, ARGV[2] the cutoff (ms) before which a pending
-- account counts as a dead registration. Returns 1 when the claim naming this account
-- is live, 0 when it is stale (account gone, dead registration, or entry removed).
local st = redis.call('HMGET', KEYS[1], 'pending', 'created_at')
if not st[2] then
  return 0
end
if st[1] == '1' then
  if tonumber(st[2]) < tonumber(ARGV[2]) then
    return 0
  end
  return 1  -- a registration in flight: its entry may not be written yet
end
return redis.call('HEXISTS', KEYS[2], ARGV[1])
