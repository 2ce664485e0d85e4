-- Prelude: a pending single-use link stored in an account field as
-- "<expires_ms>.<digest>". True when `digest` is that link's and it has not expired.
local function link_matches(account, field, digest, now_ms)
  local stored = redis.call('HGET', account, field)
  if not stored then
    return false
  end
  local dot = string.find(stored, '.', 1, true)
  return dot ~= nil and string.sub(stored, dot + 1) == digest
    and tonumber(string.sub(stored, 1, dot - 1)) > tonumber(now_ms)
end
