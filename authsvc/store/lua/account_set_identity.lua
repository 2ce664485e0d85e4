-- KEYS[1] account. ARGV: field ('username' or 'email'), expected old value, new value,
-- now_ms. Compare-and-set, so two concurrent renames cannot both win.
if redis.call('HGET', KEYS[1], ARGV[1]) ~= ARGV[2] then
  return 0
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3], 'updated_at', ARGV[4])
return 1
