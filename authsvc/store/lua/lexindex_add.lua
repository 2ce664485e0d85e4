-- KEYS: directory, bucket counter. ARGV: bucket key prefix, bucket size, member, ...
-- Adds the members (needs the _lexindex prelude); returns how many were new. A bucket
-- that grows past the size is split in two, so each stays a small listpack.
local counter, size = KEYS[2], tonumber(ARGV[2])

local function new_bucket(bound)
  local entry = bound .. '\0' .. redis.call('INCR', counter)
  redis.call('ZADD', dir, 0, entry)
  return entry
end

local function fill(key, members, from, to)
  local args = {}
  for i = from, to do
    args[#args + 1] = 0
    args[#args + 1] = members[i]
  end
  redis.call('ZADD', key, unpack(args))
end

local function split(key)
  local members = redis.call('ZRANGE', key, 0, -1)
  local n = #members
  local cut = math.floor(n / 2)
  -- Rewritten rather than trimmed: a bucket a long member turned into a skiplist
  -- becomes a listpack again once that member has moved or gone.
  redis.call('DEL', key)
  fill(key, members, 1, cut)
  fill(bucket_key(new_bucket(members[cut + 1])), members, cut + 1, n)
end

for i = 3, #ARGV do  -- before any write: a script's writes are not undone by an error
  if string.find(ARGV[i], '\0', 1, true) then
    return redis.error_reply('lex index members cannot hold NUL')
  end
end

local added = 0
for i = 3, #ARGV do
  local m = ARGV[i]
  -- Below every bound (an empty index, or its first bucket was dropped): a new first
  -- bucket with the empty bound.
  local entry = bucket_of(m) or new_bucket('')
  local key = bucket_key(entry)
  if redis.call('ZADD', key, 0, m) == 1 then
    added = added + 1
    if redis.call('ZCARD', key) > size then
      split(key)
    end
  end
end
return added
