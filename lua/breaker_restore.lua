-- breaker_restore: write back an OPEN breaker whose shared state vanished.
--
-- A replica whose mirror says OPEN, reading the shared key as absent (FLUSHALL, a restart
-- without persistence, eviction) or corrupt, calls this so that the breaker does not close
-- silently: the state is re-created OPEN with the generation, trip time and cool-down end
-- the replica knew (absolute server ms, so the remaining cool-down is kept). A key that
-- exists and decodes is left alone: another replica (or a real transition) got there first.
--
-- KEYS[1] - breaker state hash
-- KEYS[2] - half-open probe leases (only read, for the reply)
-- ARGV[1] - channel: pub/sub channel for transition events
-- ARGV[2] - name: the breaker's name, echoed in events
-- ARGV[3] - gen: the generation the replica knew (>= 1)
-- ARGV[4] - opened_at_ms: when it tripped
-- ARGV[5] - open_until_ms: when its cool-down ends
-- ARGV[6] - failures_at_trip
-- ARGV[7] - key_ttl_ms: expiry of the state key (>= 1)
-- Reply: the breaker_read reply after the call, with code 1 when this call wrote the state
--   back and 0 when it left an existing one alone (plus 16 when that one was corrupt
--   and so replaced): {code, state, gen, failures, successes, opened_at_ms,
--   open_until_ms, now_ms, failures_at_trip, total_failures, total_successes, trips,
--   active_probes}.
-- Nothing is written once the cool-down has ended: the next acquire half-opens as usual.

-- @include "lib/server_time_ms.lua"
-- @include "lib/breaker_codes.lua"
-- @include "lib/breaker_fields.lua"
-- @include "lib/publish_transition.lua"

local state_key = KEYS[1]
local probes_key = KEYS[2]
local channel = ARGV[1]
local name = ARGV[2]
local gen = tonumber(ARGV[3])
local opened_at = tonumber(ARGV[4])
local open_until = tonumber(ARGV[5])
local fat = tonumber(ARGV[6])
local key_ttl_ms = tonumber(ARGV[7])
if not gen or gen < 1 or not opened_at or not open_until or not fat or not key_ttl_ms
    or key_ttl_ms < 1 then
  return redis.error_reply('MSFW_BADARG breaker_restore: gen >= 1, integer times, key_ttl_ms >= 1')
end
local now_ms = server_time_ms()

local h, corrupt = breaker_fields(state_key, true, 'gen', 'fail', 'succ', 'opened_at',
  'open_until', 'tf', 'ts', 'trips', 'fat')
local code = 0
if h[1] == false and now_ms < open_until then
  redis.call('HSET', state_key, 'st', 'open', 'gen', gen, 'fail', 0, 'succ', 0,
    'opened_at', opened_at, 'open_until', open_until, 'fat', fat)
  local expire_ms = key_ttl_ms
  if open_until - now_ms > expire_ms then expire_ms = open_until - now_ms end
  redis.call('PEXPIRE', state_key, expire_ms)
  publish_transition(channel, name, gen, 'open', opened_at, open_until, now_ms)
  code = 1
  h = {'open', gen, 0, 0, opened_at, open_until, false, false, false, fat}
elseif h[1] ~= false and redis.call('PTTL', state_key) == -1 then
  -- Every key the library finds without an expiry gets one.
  redis.call('PEXPIRE', state_key, key_ttl_ms)
end
if corrupt then code = code + 16 end
local st = h[1] or 'closed'
local probes = redis.call('ZCOUNT', probes_key, '(' .. now_ms, '+inf')
return {code, breaker_codes[st], tonumber(h[2]) or 0, tonumber(h[3]) or 0, tonumber(h[4]) or 0,
  tonumber(h[5]) or 0, tonumber(h[6]) or 0, now_ms, tonumber(h[10]) or 0, tonumber(h[7]) or 0,
  tonumber(h[8]) or 0, tonumber(h[9]) or 0, probes}
