-- KEYS: the API key hash, the owner's account hash (local owners) or user record.
-- ARGV: sha256 of the presented key, now_ms, local ('1'/'0').
-- Returns {'ok', field, value, ...} or {'invalid'}. Stamps last_used_at at most once a
-- minute, so a busy key does not write on every request.
local k = redis.call('HGETALL', KEYS[1])
if #k == 0 then
  return {'invalid'}
end
local f = {}
for i = 1, #k, 2 do
  f[k[i]] = k[i + 1]
end
local now = tonumber(ARGV[2])
if f['hash'] ~= ARGV[1] then
  return {'invalid'}
end
if f['expires_at'] ~= nil and f['expires_at'] ~= '' and tonumber(f['expires_at']) <= now then
  return {'invalid'}
end
if ARGV[3] == '1' then
  local st = redis.call('HMGET', KEYS[2], 'is_active', 'pending')
  if st[1] ~= '1' or st[2] == '1' then
    return {'invalid'}
  end
elseif redis.call('EXISTS', KEYS[2]) == 0 or redis.call('HGET', KEYS[2], 'is_active') == '0' then
  return {'invalid'}  -- an external owner that is unknown or disabled
end
if f['last_used_at'] == nil or now - tonumber(f['last_used_at']) > 60000 then
  redis.call('HSET', KEYS[1], 'last_used_at', ARGV[2])
end
local out = {'ok'}
for i = 1, #k do
  out[#out + 1] = k[i]
end
return out
