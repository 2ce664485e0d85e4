-- Compare-and-set a whole hash: WATCH/MULTI as one script, so it also holds on a Redis
-- Cluster (whose async client cannot WATCH). KEYS[1] hash; ARGV[1] n; then n expected
-- field/value pairs (the hash must hold exactly these); then changes as field/value
-- pairs, an empty value deleting the field. Returns 1 if applied, 0 if the hash moved.
local n = tonumber(ARGV[1])
if redis.call('HLEN', KEYS[1]) ~= n then
  return 0
end
for i = 2, 2 * n, 2 do
  if redis.call('HGET', KEYS[1], ARGV[i]) ~= ARGV[i + 1] then
    return 0
  end
end
for i = 2 * n + 2, #ARGV, 2 do
  if ARGV[i + 1] == '' then
    redis.call('HDEL', KEYS[1], ARGV[i])
  else
    redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
  end
end
return 1
