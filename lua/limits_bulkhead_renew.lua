-- limits_bulkhead_renew: extend the leases of permits still in use (long calls).
--
-- Only tokens still held are renewed (ZADD XX): a lease that already lapsed was
-- reaped and may have been given to another caller, so it is not resurrected.
--
-- KEYS[1] - permits: zset token -> lease expiry ms
-- ARGV[1] - lease_ms: new lease length from now (>= 1)
-- ARGV[2] - now_ms: explicit server time for tests; 0 means read TIME
-- ARGV[3..] - token: the permits to renew (at least one)
-- Reply: array {renewed, now_ms}
-- @include "lib/now_or_server_ms.lua"
-- @include "lib/int_arg_error.lua"
-- @include "lib/arg_error.lua"
-- @include "lib/reap_expired.lua"

local permits_key = KEYS[1]
local lease_ms = tonumber(ARGV[1])
local now_ms = tonumber(ARGV[2])
local err = int_arg_error(lease_ms, 1, 'lease_ms')
  or int_arg_error(now_ms, 0, 'now_ms')
  or arg_error(#ARGV < 3, 'at least one token is required')
if err then
  return redis.error_reply(err)
end
now_ms = now_or_server_ms(now_ms)

reap_expired(permits_key, now_ms)
local renewed = 0
for i = 3, #ARGV do
  if redis.call('ZSCORE', permits_key, ARGV[i]) then
    redis.call('ZADD', permits_key, 'XX', now_ms + lease_ms, ARGV[i])
    renewed = renewed + 1
  end
end
if renewed > 0 then
  local newest = redis.call('ZRANGE', permits_key, -1, -1, 'WITHSCORES')
  -- The key outlives its newest lease by one second, as in limits_bulkhead_acquire.
  redis.call('PEXPIRE', permits_key, tonumber(newest[2]) - now_ms + 1000)
end
return {renewed, now_ms}
