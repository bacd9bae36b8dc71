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
-- Reply: array {released, in_flight, now_ms}
-- Publishes on ARGV[1] 'free|<released + reaped>|<in_flight>' when any permit came free.
local permits_key = KEYS[1]
local channel = ARGV[1]
local now_ms = tonumber(ARGV[2])
if not now_ms or #ARGV < 3 then
  return redis.error_reply('MSFW_BADARG limits_bulkhead_release: bad now_ms or no token')
end
if now_ms <= 0 then
  local t = redis.call('TIME')
  now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local released = 0
for i = 3, #ARGV do
  released = released + redis.call('ZREM', permits_key, ARGV[i])
end
local freed = released + redis.call('ZREMRANGEBYSCORE', permits_key, '-inf', now_ms)
local in_flight = redis.call('ZCARD', permits_key)
-- No write adds a member here, so the expiry set by acquire still bounds the key.
if freed > 0 then
  redis.call('PUBLISH', channel, 'free|' .. freed .. '|' .. in_flight)
end
return {released, in_flight, now_ms}
