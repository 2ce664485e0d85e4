-- Shared session functions (a prelude). Every key of an account shares its hash tag,
-- so these may touch all of the account's sessions and refresh tokens at once.

-- Deletes one session: its hash, its refresh tokens, their index, its zset entry.
local function revoke_session(sessions_key, session_prefix, refresh_prefix, sid)
  local tokens_key = session_prefix .. sid .. ':refresh'
  for _, h in ipairs(redis.call('SMEMBERS', tokens_key)) do
    redis.call('DEL', refresh_prefix .. h)
  end
  local n = redis.call('DEL', session_prefix .. sid, tokens_key)
  return redis.call('ZREM', sessions_key, sid) + n
end

-- Revokes every session of the account except `keep` ('' keeps none); returns how many.
local function revoke_all(sessions_key, session_prefix, refresh_prefix, keep)
  local count = 0
  for _, sid in ipairs(redis.call('ZRANGE', sessions_key, 0, -1)) do
    if sid ~= keep then
      revoke_session(sessions_key, session_prefix, refresh_prefix, sid)
      count = count + 1
    end
  end
  return count
end
