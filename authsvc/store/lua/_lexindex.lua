-- Shared by the lexindex_* scripts (a prelude; authsvc/store/lexindex.py). KEYS[1] is
-- the index's directory: one member "<lower bound>\0<bucket number>" per bucket, all
-- scores 0, so it sorts by bound. ARGV[1] .. number is the bucket's key. Bounds and
-- members never hold NUL, which keeps the comparisons below exact.
local dir, bucket_prefix = KEYS[1], ARGV[1]

-- The bucket key a directory entry names.
local function bucket_key(entry)
  return bucket_prefix .. string.sub(entry, string.find(entry, '\0', 1, true) + 1)
end

-- The entry of the bucket that holds x: the last one whose bound <= x ("b\0n" sorts
-- below "x\1" exactly when b <= x). nil when x is below every bound.
local function bucket_of(x)
  return redis.call('ZREVRANGEBYLEX', dir, '(' .. x .. '\1', '-', 'LIMIT', 0, 1)[1]
end
