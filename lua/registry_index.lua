-- registry_index: record that a service exists in the cross-service index.
--
-- KEYS[1] services  zset (global key, no hash tag): service name -> last touch, server ms
-- ARGV[1] now_ms       server time to use; 0 reads TIME (tests pass a fixed value)
-- ARGV[2] service      service name, non-empty
-- ARGV[3] retention_ms entries untouched for longer are pruned; also the key's expiry
-- Reply: integer, the number of services in the index.
--
-- The index is a separate single-key call made after a per-service script, never part of
-- one multi-slot script: its key has no {service} tag, so it lives in its own slot.

-- @include "lib/now_or_server_ms.lua"
-- @include "lib/int_arg_error.lua"
-- @include "lib/empty_arg_error.lua"
-- @include "lib/reap_expired.lua"

local services_key = KEYS[1]
local now_ms = tonumber(ARGV[1])
local service = ARGV[2]
local retention_ms = tonumber(ARGV[3])

local err = int_arg_error(now_ms, 0, 'now_ms')
  or empty_arg_error('service', service)
  or int_arg_error(retention_ms, 1, 'retention_ms')
if err then
  return redis.error_reply(err)
end
now_ms = now_or_server_ms(now_ms)

redis.call('ZADD', services_key, now_ms, service)
reap_expired(services_key, now_ms - retention_ms)
redis.call('PEXPIRE', services_key, retention_ms)
return redis.call('ZCARD', services_key)
