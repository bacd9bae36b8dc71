-- breaker_control: manual, fleet-wide control of one breaker.
--
-- KEYS[1] - breaker state hash
-- KEYS[2] - half-open probe leases
-- KEYS[3] - rate-mode window
-- ARGV[1] - channel: pub/sub channel for transition events
-- ARGV[2] - name: the breaker's name, echoed in events
-- ARGV[3] - action: 'open' (force open), 'close' (force closed), 'disable' (admit all,
--           record metrics only) or 'reset' (back to a fresh CLOSED)
-- ARGV[4] - ttl_ms: how long the override lasts; 0 = until changed (reset ignores it)
-- ARGV[5] - key_ttl_ms: expiry of the state key (>= 1); an override outlives it if longer
-- ARGV[6] - now_ms: explicit server time for tests; 0 means read TIME
-- ARGV[last] - publish mode, appended by the store: 'spublish' on Cluster, else 'publish' (lib/publish.lua)
-- Reply: array {0, state, gen, 0, 0, opened_at_ms, open_until_ms, now_ms, 0}
--   (the 0 after now_ms is failures_at_trip: a manual state is never a trip)
-- Publishes on ARGV[1] at each transition: 'gen|state|opened_at_ms|open_until_ms|now_ms|name'.

-- @include "lib/now_or_server_ms.lua"
-- @include "lib/publish_transition.lua"

local state_key = KEYS[1]
local probes_key = KEYS[2]
local window_key = KEYS[3]
local channel = ARGV[1]
local name = ARGV[2]
local action = ARGV[3]
local ttl_ms = tonumber(ARGV[4])
local key_ttl_ms = tonumber(ARGV[5])
local now_ms = tonumber(ARGV[6])
local targets = {open = 'forced_open', close = 'forced_closed', disable = 'disabled', reset = 'closed'}
if targets[action] == nil or not ttl_ms or ttl_ms < 0 or not key_ttl_ms or key_ttl_ms < 1
    or not now_ms then
  return redis.error_reply('MSFW_BADARG breaker_control: action must be open, close, disable or reset; ttl_ms >= 0')
end
now_ms = now_or_server_ms(now_ms)

local h = redis.call('HMGET', state_key, 'gen', 'opened_at')
local gen = (tonumber(h[1]) or 0) + 1
local st = targets[action]
local opened_at = tonumber(h[2]) or 0
local open_until = 0
if action ~= 'reset' and ttl_ms > 0 then
  open_until = now_ms + ttl_ms
end
if st == 'forced_open' then
  opened_at = now_ms
end
redis.call('DEL', probes_key, window_key)
redis.call('HSET', state_key, 'st', st, 'gen', gen, 'fail', 0, 'succ', 0,
  'opened_at', opened_at, 'open_until', open_until, 'fat', 0)
local expire_ms = key_ttl_ms
if ttl_ms > expire_ms then expire_ms = ttl_ms end
redis.call('PEXPIRE', state_key, expire_ms)
publish_transition(channel, name, gen, st, opened_at, open_until, now_ms)
return {0, breaker_codes[st], gen, 0, 0, opened_at, open_until, now_ms, 0}
