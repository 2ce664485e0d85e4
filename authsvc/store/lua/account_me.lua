-- KEYS: account. ARGV: sid. The caller's own account (guarded like every caller step).
return {'ok', redis.call('HGETALL', KEYS[1])}
