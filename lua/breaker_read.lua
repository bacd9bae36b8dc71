-- breaker_read: one breaker's shared state, without changing anything.
--
-- KEYS[1] - breaker state hash  (<prefix>:v1:{svc}:breaker:state:<name>)
-- KEYS[2] - half-open probe leases, zset token -> lease expiry ms
-- ARGV[1] - now_ms: explicit server time for tests; 0 means read TIME
-- Reply: array {0, state, gen, failures, successes, opened_at_ms, open_until_ms, now_ms,
--               failures_at_trip, total_failures, total_successes, trips, active_probes}
--   failures_at_trip: the failure count that tripped the breaker (OPEN/HALF_OPEN), else 0.
--   state: 0 closed, 1 open, 2 half_open, 3 forced_open, 4 forced_closed, 5 disabled.
--   A missing breaker reads as closed with gen 0. A manual override whose TTL has
--   passed reads as closed (the next writing script makes that permanent).
--   A corrupt stored value (another type, an unknown state) reads as absent; code then has
--   16 added (the next writing script repairs it).

-- @include "lib/now_or_server_ms.lua"
-- @include "lib/breaker_codes.lua"
-- @include "lib/breaker_fields.lua"
-- @include "lib/override_expired.lua"

local state_key = KEYS[1]
local probes_key = KEYS[2]
local now_ms = tonumber(ARGV[1])
if now_ms == nil then
  return redis.error_reply('MSFW_BADARG now_ms must be an integer')
end
now_ms = now_or_server_ms(now_ms)

local h, corrupt = breaker_fields(state_key, false, 'gen', 'fail', 'succ', 'opened_at',
  'open_until', 'tf', 'ts', 'trips', 'fat')
local st = h[1] or 'closed'
local open_until = tonumber(h[6]) or 0
local fat = tonumber(h[10]) or 0
if override_expired(st, open_until, now_ms) then
  st = 'closed'
  open_until = 0
end
if st ~= 'open' and st ~= 'half_open' then
  fat = 0
end
local probes = redis.call('ZCOUNT', probes_key, '(' .. now_ms, '+inf')
return {corrupt and 16 or 0, breaker_codes[st], tonumber(h[2]) or 0, tonumber(h[3]) or 0, tonumber(h[4]) or 0,
  tonumber(h[5]) or 0, open_until, now_ms, fat, tonumber(h[7]) or 0, tonumber(h[8]) or 0,
  tonumber(h[9]) or 0, probes}
