-- Compare-and-set a string (WATCH/MULTI as one script: cluster-safe). KEYS[1] key;
-- ARGV[1] '1' if a value is expected, '0' if the key must be absent; ARGV[2] the
-- expected value; ARGV[3] the new value. Returns 1 if set, 0 if the key moved.
local current = redis.call('GET', KEYS[1])
if ARGV[1] == '1' then
  if current ~= ARGV[2] then
    return 0
  end
elseif current then
  return 0
end
redis.call('SET', KEYS[1], ARGV[3])
return 1
