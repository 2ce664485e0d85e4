-- KEYS: account, character index, character. ARGV: sid, character id.
local gone = redis.call('DEL', KEYS[3]) + redis.call('ZREM', KEYS[2], ARGV[2])
if gone == 0 then
  return {'not_found'}
end
return {'ok'}
