-- KEYS[1] claim; ARGV[1] account id. Deletes the claim only if it still names that
-- account, so a claim taken over by someone else is never released by mistake.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
