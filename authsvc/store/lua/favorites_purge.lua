-- KEYS: by-target hash, index. ARGV: record prefix. Deletes every favorite of one kind.
for _, uuid in ipairs(redis.call('HVALS', KEYS[1])) do
  redis.call('DEL', ARGV[1] .. uuid)
end
return redis.call('DEL', KEYS[1], KEYS[2])
