-- cache_drop: delete an entry that failed to decode, unless it was replaced meanwhile.
--
-- KEYS[1] - the entry hash (fields as in cache_lookup)
-- ARGV[1] - stored_at_ms of the entry that failed to decode
-- ARGV[2] - optional: the channel on which near caches are told '<id> D'
-- ARGV[3] - optional: the entry's id in that message (the key digest)
-- ARGV[last] - publish mode, appended by the store: 'spublish' on Cluster, else 'publish' (lib/publish.lua)
-- Reply: integer, 1 when the entry was dropped, 0 when it had already changed or gone
--
-- Compare-and-delete on stored-at, so a reader holding an old corrupt copy cannot
-- delete a good entry written since. Lease fields are kept: a fill in progress goes on.

-- @include "lib/arg_error.lua"
-- @include "lib/publish.lua"

local entry_key = KEYS[1]
local stored_at = ARGV[1]
local channel = ARGV[2] or ''
local entry_id = ARGV[3] or ''

local err = arg_error(stored_at == '' or not tonumber(stored_at),
  'stored_at_ms must be an integer')
if err then
  return redis.error_reply(err)
end

local f = redis.pcall('HMGET', entry_key, 'sa')
if f.err then
  return redis.call('DEL', entry_key)
end
if f[1] ~= stored_at then
  return 0
end
redis.call('HDEL', entry_key, 'v', 'sa', 'fu', 'su', 'g')
if channel ~= '' and entry_id ~= '' then
  publish(channel, entry_id .. ' D')
end
return 1
