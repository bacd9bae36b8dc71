-- limits_bulkhead_release: give back permits of a fleet-wide bulkhead (batched).
--
-- One call releases every permit a process finished since its last flush. Releasing a
-- token that is not held (its lease lapsed and was reaped) is a no-op, so a late release
-- can never free someone else's permit.
--
-- KEYS[1] - permits: zset token -> lease expiry ms
-- ARGV[1] - channel: the service's limits channel, for waiters
-- ARGV[2] - now_ms: explicit server time for tests; 0 means read TIME
-- ARGV[3..] - token: the permits to release (at least one)
-- ARGV[last] - publish mode, appended by the store: 'spublish' on Cluster, else 'publish' (lib/publish.lua)
-- Reply: array {released, in_flight, now_ms}
-- Publishes on ARGV[1] 'free|<released + reaped>|<in_flight>' when any permit came free.
-- @include "lib/now_or_server_ms.lua"
-- @include "lib/int_arg_error.lua"
-- @include "lib/arg_error.lua"
-- @include "lib/reap_expired.lua"
-- @include "lib/publish.lua"

local permits_key = KEYS[1]
local channel = ARGV[1]
local now_ms = tonumber(ARGV[2])
local err = int_arg_error(now_ms, 0, 'now_ms')
  or arg_error(publish_argc < 3, 'at least one token is required')
if err then
  return redis.error_reply(err)
end
now_ms = now_or_server_ms(now_ms)

local released = 0
for i = 3, publish_argc do
  released = released + redis.call('ZREM', permits_key, ARGV[i])
end
local freed = released + reap_expired(permits_key, now_ms)
local in_flight = redis.call('ZCARD', permits_key)
-- No write adds a member here, so the expiry set by acquire still bounds the key.
if freed > 0 then
  publish(channel, 'free|' .. freed .. '|' .. in_flight)
end
return {released, in_flight, now_ms}
