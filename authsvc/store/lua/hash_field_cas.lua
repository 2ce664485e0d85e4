-- Compare-and-set one field of a hash. KEYS[1] hash; ARGV[1] field, ARGV[2] the value
-- expected ('' = the field must be absent), ARGV[3] the new value ('' deletes the field).
-- Returns 1 if applied, 0 if the field moved meanwhile.
local current = redis.call('HGET', KEYS[1], ARGV[1]) or ''
if current ~= ARGV[2] then
  return 0
end
if ARGV[3] == '' then
  redis.call('HDEL', KEYS[1], ARGV[1])
else
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
end
return 1
