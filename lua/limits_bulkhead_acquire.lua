-- limits_bulkhead_acquire: take one permit of a fleet-wide bulkhead, or say when to retry.
--
-- Permits are leases: members of a sorted set scored by their server-time expiry. Expired
-- leases (a SIGKILLed holder's) are reaped first, so they come back within one lease.
-- Taking a permit with a token already held renews that lease instead (idempotent), so a
-- retried acquire after a lost reply cannot take two permits.
--
-- KEYS[1] - permits: zset token -> lease expiry ms
-- ARGV[1] - channel: the service's limits channel (a reap that frees permits publishes)
-- ARGV[2] - token: unique id of this call's permit
-- ARGV[3] - limit: permits the fleet may hold at once (>= 1)
-- ARGV[4] - lease_ms: how long the permit lasts unless renewed (>= 1)
-- ARGV[5] - now_ms: explicit server time for tests; 0 means read TIME
-- ARGV[last] - publish mode, appended by the store: 'spublish' on Cluster, else 'publish' (lib/publish.lua)
-- Reply: array {granted, in_flight, now_ms, earliest_expiry_ms}
--   granted: 1 the permit is held by `token`, 0 the bulkhead is full.
--   in_flight: permits held after this call.
--   earliest_expiry_ms: when the oldest lease lapses (0 when none is held).
-- Publishes on ARGV[1] 'free|<freed>|<in_flight>' when the reap frees any permit.
-- @include "lib/now_or_server_ms.lua"
-- @include "lib/int_arg_error.lua"
-- @include "lib/empty_arg_error.lua"
-- @include "lib/reap_expired.lua"
-- @include "lib/publish.lua"

local permits_key = KEYS[1]
local channel = ARGV[1]
local token = ARGV[2]
local limit = tonumber(ARGV[3])
local lease_ms = tonumber(ARGV[4])
local now_ms = tonumber(ARGV[5])
local err = empty_arg_error('token', token)
  or int_arg_error(limit, 1, 'limit')
  or int_arg_error(lease_ms, 1, 'lease_ms')
  or int_arg_error(now_ms, 0, 'now_ms')
if err then
  return redis.error_reply(err)
end
now_ms = now_or_server_ms(now_ms)

local freed = reap_expired(permits_key, now_ms)
local held = redis.call('ZSCORE', permits_key, token)
local in_flight = redis.call('ZCARD', permits_key)
local granted = 0
if held or in_flight < limit then
  redis.call('ZADD', permits_key, now_ms + lease_ms, token)
  if not held then
    in_flight = in_flight + 1
  end
  granted = 1
end
local earliest = 0
local first = redis.call('ZRANGE', permits_key, 0, 0, 'WITHSCORES')
if first[2] then
  earliest = tonumber(first[2])
end
if in_flight > 0 then
  -- The key outlives its newest lease by one second. Relative to the script's now (not
  -- PEXPIREAT), so an explicit now_ms in tests cannot expire the key at once.
  local newest = redis.call('ZRANGE', permits_key, -1, -1, 'WITHSCORES')
  redis.call('PEXPIRE', permits_key, tonumber(newest[2]) - now_ms + 1000)
end
if freed > 0 then
  publish(channel, 'free|' .. freed .. '|' .. in_flight)
end
return {granted, in_flight, now_ms, earliest}
