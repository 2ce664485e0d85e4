-- KEYS: directory, bucket counter. ARGV: bucket key prefix, member, ... Removes the
-- members (needs the _lexindex prelude); returns how many were there. An emptied
-- bucket is dropped from the directory; an emptied index leaves no key behind.
local removed = 0
for i = 2, #ARGV do
  local entry = bucket_of(ARGV[i])
  if entry then
    local key = bucket_key(entry)
    removed = removed + redis.call('ZREM', key, ARGV[i])
    if redis.call('EXISTS', key) == 0 then
      redis.call('ZREM', dir, entry)
    end
  end
end
if redis.call('EXISTS', dir) == 0 then
  redis.call('DEL', KEYS[2])
end
return removed
