-- KEYS: account, character. ARGV: sid.
local c = redis.call('HGETALL', KEYS[2])
if #c == 0 then
  return {'not_found'}
end
return {'ok', c}
