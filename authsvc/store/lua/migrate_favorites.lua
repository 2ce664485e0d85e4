-- KEYS: one kind's by-target hash, its index. ARGV[1] the old record prefix
-- (`fav:{user}:<kind>:`). The layout before: by_target held target -> uuid and every
-- favorite had a hash `<prefix><uuid>` (uuid, user_id, target, created_ms, extras).
-- Now by_target holds the whole record ("<created_ms:013d>:<uuid>[:<JSON extras>]") and
-- the index "<created_ms:013d>:<target>". Returns the favorites moved (0: nothing old).
local pairs_flat = redis.call('HGETALL', KEYS[1])
local moved = 0
local base = {uuid = true, user_id = true, target = true, created_ms = true}
for i = 1, #pairs_flat, 2 do
  local target, value = pairs_flat[i], pairs_flat[i + 1]
  if string.sub(value, 14, 14) ~= ':' then  -- a bare uuid: the old layout
    local record = redis.call('HGETALL', ARGV[1] .. value)
    if #record == 0 then
      redis.call('HDEL', KEYS[1], target)  -- a pair without its record: nothing to keep
    else
      local created, extras, any = '0', {}, false
      for j = 1, #record, 2 do
        if record[j] == 'created_ms' then
          created = record[j + 1]
        elseif not base[record[j]] then
          extras[record[j]] = record[j + 1]
          any = true
        end
      end
      local packed = string.format('%013d', tonumber(created)) .. ':' .. value
      if any then
        packed = packed .. ':' .. cjson.encode(extras)
      end
      redis.call('HSET', KEYS[1], target, packed)
      redis.call('DEL', ARGV[1] .. value)
    end
    moved = moved + 1
  end
end
if moved > 0 then  -- the old index named uuids: rebuild it from the records
  redis.call('DEL', KEYS[2])
  local now_flat = redis.call('HGETALL', KEYS[1])
  for i = 1, #now_flat, 2 do
    redis.call('ZADD', KEYS[2], 0, string.sub(now_flat[i + 1], 1, 13) .. ':' .. now_flat[i])
  end
end
return moved
