"""The only code that knows keys, Lua and redis-py: one method per atomic step."""
