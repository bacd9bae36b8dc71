-- registry_services: the names in the cross-service index, pruning stale entries.
--
-- KEYS[1] services  zset (global key, no hash tag): service name -> last touch, server ms
-- ARGV[1] now_ms       server time to use; 0 reads TIME (tests pass a fixed value)
-- ARGV[2] retention_ms entries untouched for longer are pruned
-- Reply: flat array of service names, sorted by name.
--
-- A name may outlive its last instance until it is pruned: readers treat a service with
-- no instances as empty, not as an error.

-- @include "lib/now_or_server_ms.lua"
-- @include "lib/int_arg_error.lua"
-- @include "lib/reap_expired.lua"

local services_key = KEYS[1]
local now_ms = tonumber(ARGV[1])
local retention_ms = tonumber(ARGV[2])

local err = int_arg_error(now_ms, 0, 'now_ms')
  or int_arg_error(retention_ms, 1, 'retention_ms')
if err then
  return redis.error_reply(err)
end
now_ms = now_or_server_ms(now_ms)

-- Pruning writes nothing new, so the key keeps the expiry its last touch gave it.
reap_expired(services_key, now_ms - retention_ms)
local names = redis.call('ZRANGE', services_key, 0, -1)
table.sort(names)
return names
