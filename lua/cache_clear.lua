-- cache_clear: delete one cache entry and any lease on it.
--
-- KEYS[1] - the entry hash (fields as in cache_lookup)
-- ARGV[1] - the channel on which waiters are told
-- ARGV[2] - the entry's id in that message (the key digest)
-- ARGV[last] - publish mode, appended by the store: 'spublish' on Cluster, else 'publish' (lib/publish.lua)
-- Reply: integer, 1 when something was deleted, else 0
--
-- Near caches in every process listen on the channel too: without waiters the clear is
-- announced as '<id> C', so their copies go at once.
--
-- Deleting the lease too means a fill already in flight is refused (its token is gone),
-- so data fetched before the clear cannot be stored after it. Waiters of that fill are
-- told '<id> S' and call the origin themselves.

-- @include "lib/arg_error.lua"
-- @include "lib/publish.lua"

local entry_key = KEYS[1]
local channel = ARGV[1]
local entry_id = ARGV[2]

local err = arg_error(channel == '' or entry_id == '', 'channel and entry id are required')
if err then
  return redis.error_reply(err)
end

local f = redis.pcall('HMGET', entry_key, 'w')
if not f.err and f[1] then
  publish(channel, entry_id .. ' S')
else
  publish(channel, entry_id .. ' C')
end
return redis.call('DEL', entry_key)
