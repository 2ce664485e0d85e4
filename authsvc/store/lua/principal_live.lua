-- KEYS: account. ARGV: sid. Nothing but the guard: is the caller still live?
return {'ok'}
