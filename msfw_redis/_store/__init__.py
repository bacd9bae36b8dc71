"""The store: the only code that talks to Redis. Connection URLs, the Lua script loader, key names,
the event bus (pub/sub) and the server clock; redis-py errors are translated here, once.
"""
