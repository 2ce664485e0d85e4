-- KEYS[1] a user's activity key. A stream (the layout before the activity index) becomes
-- the lex zset of its entries' ids, zero-padded as authsvc.audit.activity_member pads
-- them. Atomic, so no audit write lands in between. Returns the ids moved, or -1 when
-- the key is not a stream (already migrated, or gone).
if redis.call('TYPE', KEYS[1])['ok'] ~= 'stream' then
  return -1
end
local members = {}
for _, entry in ipairs(redis.call('XRANGE', KEYS[1], '-', '+')) do
  local dash = string.find(entry[1], '-', 1, true)
  members[#members + 1] = 0
  members[#members + 1] = string.format('%013d-%06d', tonumber(string.sub(entry[1], 1, dash - 1)),
                                        tonumber(string.sub(entry[1], dash + 1)))
end
redis.call('DEL', KEYS[1])
for i = 1, #members, 200 do
  redis.call('ZADD', KEYS[1], unpack(members, i, math.min(i + 199, #members)))
end
return #members / 2
