-- Unlink identities. KEYS[1] account hash, KEYS[2] its identities hash.
-- ARGV[1] the field prefix of the kind (`oidc:` or `device:`), ARGV[2] what to match:
-- 'slug' (ARGV[3] a provider slug) or 'prefix' (ARGV[3] the start of a digest).
-- Refuses to remove the last way to sign in: afterwards the account must still have a
-- password or another identity. Returns {'ok', digest, ...} | {'last'} | {'none'}.
if redis.call('EXISTS', KEYS[1]) == 0 then
  return {'none'}
end
local all = redis.call('HGETALL', KEYS[2])
local n = string.len(ARGV[1])
local matched, others = {}, 0
for i = 1, #all, 2 do
  local name = all[i]
  local sep = string.find(name, ':', 1, true)
  if sep and not string.find(name, ':', sep + 1, true) then  -- an entry, not :used/:roles
    local hit = false
    if string.sub(name, 1, n) == ARGV[1] then
      local digest = string.sub(name, n + 1)
      if ARGV[2] == 'prefix' then
        hit = string.sub(digest, 1, string.len(ARGV[3])) == ARGV[3]
      else
        local ok, meta = pcall(cjson.decode, all[i + 1])
        hit = ok and type(meta) == 'table' and meta['slug'] == ARGV[3]
      end
      if hit then
        matched[#matched + 1] = digest
      end
    end
    if not hit then
      others = others + 1
    end
  end
end
if #matched == 0 then
  return {'none'}
end
local password = redis.call('HGET', KEYS[1], 'password') or ''
if password == '' and others == 0 then
  return {'last'}
end
local out = {'ok'}
for _, digest in ipairs(matched) do
  local field = ARGV[1] .. digest
  redis.call('HDEL', KEYS[2], field, field .. ':used', field .. ':roles')
  out[#out + 1] = digest
end
return out
