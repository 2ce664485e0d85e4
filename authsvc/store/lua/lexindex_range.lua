-- KEYS: directory. ARGV: bucket key prefix, low, high (ZRANGEBYLEX bounds: '-', '+',
-- '[x', '(x'), '1' for descending order, limit. Up to limit members within the bounds,
-- in order, read bucket by bucket (needs the _lexindex prelude). Every bucket but the
-- first and last read contributes all its members, so a page reads at most limit + 2.
local low, high, limit = ARGV[2], ARGV[3], tonumber(ARGV[5])

-- Members hold no NUL, so a bound with one means the same as the text before it.
local function no_nul(bound, inclusive)
  local i = string.find(bound, '\0', 1, true)
  if not i then
    return bound
  end
  return (inclusive and '[' or '(') .. string.sub(bound, 2, i - 1)
end
low, high = no_nul(low, false), no_nul(high, true)

local first_entry = function()
  return redis.call('ZRANGE', dir, 0, 0)[1]
end
local first, last
if low == '-' then
  first = first_entry()
else
  first = bucket_of(string.sub(low, 2)) or first_entry()
end
if high == '+' then
  last = redis.call('ZRANGE', dir, -1, -1)[1]
elseif string.sub(high, 1, 1) == '(' then
  -- The last bucket whose bound is below x ("b\0n" < "x" exactly when b < x).
  last = redis.call('ZREVRANGEBYLEX', dir, high, '-', 'LIMIT', 0, 1)[1]
else
  last = bucket_of(string.sub(high, 2))
end
if not first or not last then
  return {}
end

local read, from, to, entry, stop = 'ZRANGEBYLEX', low, high, first, last
if ARGV[4] == '1' then
  read, from, to, entry, stop = 'ZREVRANGEBYLEX', high, low, last, first
end
local out = {}
while entry do
  for _, m in ipairs(redis.call(read, bucket_key(entry), from, to, 'LIMIT', 0, limit - #out)) do
    out[#out + 1] = m
  end
  if #out >= limit or entry == stop then
    break
  end
  entry = redis.call(read, dir, '(' .. entry, '[' .. stop, 'LIMIT', 0, 1)[1]
end
return out
