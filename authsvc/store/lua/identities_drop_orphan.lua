-- KEYS[1] account hash, KEYS[2] its identities hash. Deletes the identities hash only
-- while its account does not exist (`authsvc check --fix`, after releasing its claims).
if redis.call('EXISTS', KEYS[1]) == 1 then
  return 0
end
return redis.call('DEL', KEYS[2])
