-- limits_retryafter_close: close one endpoint for every replica until a server-time instant.
--
-- Written when a replica sees 429, or 503 with Retry-After. The gate is per endpoint:
-- one hash per service, field endpoint -> not-before ms. A later close can only extend
-- the window, never shorten it. Lapsed fields are dropped on each write.
--
-- KEYS[1] - gate: hash endpoint -> not_before_ms
-- ARGV[1] - channel: the service's limits channel
-- ARGV[2] - endpoint: the endpoint closed (non-empty)
-- ARGV[3] - retry_after_ms: the server's Retry-After, in ms (>= 0)
-- ARGV[4] - cap_ms: upper bound on the window (retry_after_max), in ms (>= 0)
-- ARGV[5] - now_ms: explicit server time for tests; 0 means read TIME
-- ARGV[last] - publish mode, appended by the store: 'spublish' on Cluster, else 'publish' (lib/publish.lua)
-- Reply: array {not_before_ms, now_ms}
-- Publishes on ARGV[1] 'gate|<not_before_ms>|<now_ms>|<endpoint>'.
-- @include "lib/now_or_server_ms.lua"
-- @include "lib/int_arg_error.lua"
-- @include "lib/empty_arg_error.lua"
-- @include "lib/publish.lua"

local gate_key = KEYS[1]
local channel = ARGV[1]
local endpoint = ARGV[2]
local retry_after_ms = tonumber(ARGV[3])
local cap_ms = tonumber(ARGV[4])
local now_ms = tonumber(ARGV[5])
local err = empty_arg_error('endpoint', endpoint)
  or int_arg_error(retry_after_ms, 0, 'retry_after_ms')
  or int_arg_error(cap_ms, 0, 'cap_ms')
  or int_arg_error(now_ms, 0, 'now_ms')
if err then
  return redis.error_reply(err)
end
now_ms = now_or_server_ms(now_ms)

if retry_after_ms > cap_ms then
  retry_after_ms = cap_ms
end
local not_before = now_ms + retry_after_ms
local current = tonumber(redis.call('HGET', gate_key, endpoint))
if current and current > not_before then
  not_before = current
end
redis.call('HSET', gate_key, endpoint, not_before)
local latest = not_before
local all = redis.call('HGETALL', gate_key)
for i = 1, #all, 2 do
  local until_ms = tonumber(all[i + 1])
  if not until_ms or until_ms <= now_ms then
    redis.call('HDEL', gate_key, all[i])
  elseif until_ms > latest then
    latest = until_ms
  end
end
-- The gate means nothing once its last window has passed.
redis.call('PEXPIRE', gate_key, latest - now_ms + 1000)
publish(channel, 'gate|' .. not_before .. '|' .. now_ms .. '|' .. endpoint)
return {not_before, now_ms}
