-- cache_release: give up a fill lease without storing, and tell the waiters.
--
-- KEYS[1] - the entry hash (fields as in cache_lookup)
-- ARGV[1] - the lease token to give up
-- ARGV[2] - the channel on which waiters are told
-- ARGV[3] - the entry's id in that message (the key digest)
-- ARGV[last] - publish mode, appended by the store: 'spublish' on Cluster, else 'publish' (lib/publish.lua)
-- Reply: flat array {released, receivers}
--   released: 1 when the token was the current lease and is now gone, else 0
--   receivers: processes that got the '<id> S' message (0 when nobody waited)
--
-- Called when the filler will not store a value: the origin failed, the response was
-- not storable or too large. Waiters are told 'S' and call the origin themselves, so
-- none waits for the lease to expire. A usable entry in the same hash is left alone.

-- @include "lib/arg_error.lua"
-- @include "lib/publish.lua"

local entry_key = KEYS[1]
local token = ARGV[1]
local channel = ARGV[2]
local entry_id = ARGV[3]

local err = arg_error(token == '', 'a lease token is required')
  or arg_error(channel == '' or entry_id == '', 'channel and entry id are required')
if err then
  return redis.error_reply(err)
end

local f = redis.pcall('HMGET', entry_key, 'lt', 'w')
if f.err or f[1] ~= token then
  return {0, 0}
end
-- HDEL only removes fields; Redis deletes the hash when the last field goes.
redis.call('HDEL', entry_key, 'lt', 'lu', 'lg', 'w')
local receivers = 0
if f[2] then
  receivers = publish(channel, entry_id .. ' S')
end
return {1, receivers}
