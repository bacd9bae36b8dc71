-- cache_fill: store a fetched response, accepted only from the holder of the lease.
--
-- KEYS[1] - the entry hash (fields as in cache_lookup)
-- KEYS[2] - the service's generation hash (same {service} hash tag)
-- ARGV[1] - the lease token that cache_lookup granted
-- ARGV[2] - the envelope to store (msgpack bytes)
-- ARGV[3] - fresh_ms: how long the entry is fresh (0: stored only to be revalidated)
-- ARGV[4] - stale_ms: how long after that it may still be served stale
-- ARGV[5] - the function's field in KEYS[2]
-- ARGV[6] - the channel on which waiters are told
-- ARGV[7] - the entry's id in that message (the key digest)
-- ARGV[8] - now_ms: 0 to read the server's TIME (tests pass a fixed time)
-- ARGV[9] - '1' to publish '<id> F' even when nobody waits (near caches listen), else ''
-- ARGV[last] - publish mode, appended by the store: 'spublish' on Cluster, else 'publish' (lib/publish.lua)
-- Reply: flat array {result, receivers}
--   result: 1 stored; 0 refused, the token is not the current lease (it expired and
--           was taken over, was replaced by a forced refresh, or the key was cleared);
--           -1 refused, the service or function was cleared since the lease was granted
--   receivers: processes that got the wake-up message (0 when nobody waited)
--
-- Waiters are told '<id> F' (look again) after a fill and '<id> S' (the filler will not
-- store: call the origin yourself) after a refusal for generation. The generation hash
-- is kept alive at least as long as the entry, so a clear can never be undone by the
-- generation counter expiring while older entries still exist.

-- @include "lib/arg_error.lua"
-- @include "lib/is_whole.lua"
-- @include "lib/now_or_server_ms.lua"
-- @include "lib/publish.lua"

local entry_key = KEYS[1]
local gen_key = KEYS[2]
local token = ARGV[1]
local value = ARGV[2]
local fresh_ms = tonumber(ARGV[3])
local stale_ms = tonumber(ARGV[4])
local function_field = ARGV[5]
local channel = ARGV[6]
local entry_id = ARGV[7]
local now_ms = tonumber(ARGV[8])
local announce = ARGV[9] == '1'

local err = arg_error(token == '', 'a lease token is required')
  or arg_error(value == '', 'value must not be empty')
  or arg_error(not is_whole(fresh_ms, 0), 'fresh_ms must be an integer >= 0')
  or arg_error(not is_whole(stale_ms, 0), 'stale_ms must be an integer >= 0')
  or arg_error(is_whole(fresh_ms, 0) and is_whole(stale_ms, 0) and fresh_ms + stale_ms < 1,
    'fresh_ms + stale_ms must be at least 1')
  or arg_error(function_field == '' or function_field == '_',
    'function field must be non-empty and not _')
  or arg_error(channel == '' or entry_id == '', 'channel and entry id are required')
  or arg_error(not is_whole(now_ms, 0), 'now_ms must be an integer >= 0')
if err then
  return redis.error_reply(err)
end
now_ms = now_or_server_ms(now_ms)

local f = redis.pcall('HMGET', entry_key, 'lt', 'lg', 'w')
if f.err or f[1] ~= token then
  return {0, 0}
end
local lease_gen = f[2]
local waiting = f[3]

local gens = redis.pcall('HMGET', gen_key, '_', function_field)
if gens.err then
  return {-1, 0}
end
local gen = (gens[1] or '0') .. ':' .. (gens[2] or '0')

local receivers = 0
if lease_gen ~= gen then
  redis.call('HDEL', entry_key, 'lt', 'lu', 'lg', 'w')
  if waiting then
    receivers = publish(channel, entry_id .. ' S')
  end
  return {-1, receivers}
end

local life_ms = fresh_ms + stale_ms
redis.call('HSET', entry_key, 'v', value, 'sa', now_ms, 'fu', now_ms + fresh_ms,
  'su', now_ms + life_ms, 'g', gen)
redis.call('HDEL', entry_key, 'lt', 'lu', 'lg', 'w')
-- The entry lives exactly as long as it may be served.
redis.call('PEXPIRE', entry_key, life_ms)

local gen_ttl = redis.call('PTTL', gen_key)
if gen_ttl == -2 then
  redis.call('HSET', gen_key, '_', gens[1] or '0')
  redis.call('PEXPIRE', gen_key, life_ms)
elseif gen_ttl < life_ms then
  redis.call('PEXPIRE', gen_key, life_ms)
end

if waiting or announce then
  receivers = publish(channel, entry_id .. ' F')
end
return {1, receivers}
