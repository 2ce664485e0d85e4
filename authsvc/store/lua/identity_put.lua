-- Link an identity to an account. KEYS[1] account hash, KEYS[2] its identities hash,
-- KEYS[3] the caller's session hash (or the account hash again when there is none).
-- ARGV[1] the field (`<kind>:<digest>`), ARGV[2] its JSON, ARGV[3] the provider slug
-- ('' for a device), ARGV[4] '1' when a pending account may take it (registration),
-- ARGV[5] the field prefix of the kind (`oidc:`), ARGV[6] now_ms when this is also a
-- sign-in (registration: the identity's last use), else ''.
-- One identity per provider slug and account. Returns 'linked', 'already', 'slot_taken'
-- (another identity of that slug is linked) or 'gone' (account or session not live).
local st = redis.call('HMGET', KEYS[1], 'is_active', 'pending')
if not st[1] then
  return 'gone'
end
if st[2] == '1' then
  if ARGV[4] ~= '1' then
    return 'gone'
  end
elseif st[1] ~= '1' or redis.call('EXISTS', KEYS[3]) == 0 then
  return 'gone'
end
if redis.call('HEXISTS', KEYS[2], ARGV[1]) == 1 then
  return 'already'
end
if ARGV[3] ~= '' then
  local all = redis.call('HGETALL', KEYS[2])
  local n = string.len(ARGV[5])
  for i = 1, #all, 2 do
    local name = all[i]
    if string.sub(name, 1, n) == ARGV[5] and not string.find(name, ':', n + 1, true) then
      local ok, meta = pcall(cjson.decode, all[i + 1])
      if ok and type(meta) == 'table' and meta['slug'] == ARGV[3] then
        return 'slot_taken'
      end
    end
  end
end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
if ARGV[6] ~= '' then
  redis.call('HSET', KEYS[2], ARGV[1] .. ':used', ARGV[6])
end
return 'linked'
