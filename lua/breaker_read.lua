-- breaker_read: one breaker's shared state, without changing it; optionally lists the
-- breaker in its service's fleet index in the same call (a breaker's first use).
--
-- KEYS[1] - breaker state hash  (<prefix>:v1:{svc}:breaker:state:<name>)
-- KEYS[2] - half-open probe leases, zset token -> lease expiry ms
-- KEYS[3] - optional: the service's breaker index zset (<prefix>:v1:{svc}:breaker:index),
--           breaker name -> last touch, server ms; same hash tag as KEYS[1]
-- ARGV[1] - now_ms: explicit server time for tests; 0 means read TIME
-- ARGV[2] - with KEYS[3]: the breaker name to list, non-empty
-- ARGV[3] - with KEYS[3]: retention_ms, index entries untouched for longer are pruned;
--           also the index key's expiry
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
-- @include "lib/int_arg_error.lua"
-- @include "lib/empty_arg_error.lua"
-- @include "lib/reap_expired.lua"

local state_key = KEYS[1]
local probes_key = KEYS[2]
local now_ms = tonumber(ARGV[1])
if now_ms == nil then
  return redis.error_reply('MSFW_BADARG now_ms must be an integer')
end
local index_key = KEYS[3]
local retention_ms = tonumber(ARGV[3])
if index_key then
  local err = empty_arg_error('name', ARGV[2]) or int_arg_error(retention_ms, 1, 'retention_ms')
  if err then
    return redis.error_reply(err)
  end
end
now_ms = now_or_server_ms(now_ms)
if index_key then
  -- The index is written before the read's reply, so an operator's listing sees the
  -- breaker as soon as its first call proceeds (the same as registry_index does).
  redis.call('ZADD', index_key, now_ms, ARGV[2])
  reap_expired(index_key, now_ms - retention_ms)
  redis.call('PEXPIRE', index_key, retention_ms)
end

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
