-- breaker_acquire: admit a call through a breaker that is not plainly CLOSED.
--
-- Called when the local mirror says OPEN with its cool-down passed, or HALF_OPEN. An
-- elapsed OPEN becomes HALF_OPEN here, atomically, so exactly one caller fleet-wide
-- makes that transition. HALF_OPEN hands out at most half_open_max probe leases; a
-- lease expires after lease_ms so a crashed or hung probe cannot wedge the breaker.
--
-- KEYS[1] - breaker state hash
-- KEYS[2] - half-open probe leases, zset token -> lease expiry ms
-- ARGV[1] - channel: pub/sub channel for transition events
-- ARGV[2] - name: the breaker's name, echoed in events
-- ARGV[3] - token: unique id of this call, used as its probe lease
-- ARGV[4] - half_open_max: probes allowed at once across the fleet (>= 1)
-- ARGV[5] - lease_ms: how long a probe lease lasts (>= 1)
-- ARGV[6] - key_ttl_ms: expiry refreshed on every key written (>= 1)
-- ARGV[7] - now_ms: explicit server time for tests; 0 means read TIME
-- ARGV[last] - publish mode, appended by the store: 'spublish' on Cluster, else 'publish' (lib/publish.lua)
-- Reply: array {decision, state, gen, failures, successes, opened_at_ms, open_until_ms,
--               now_ms, failures_at_trip, active_probes, earliest_lease_expiry_ms}
--   failures_at_trip: the failure count that tripped the breaker (OPEN/HALF_OPEN), else 0.
--   decision: 0 admit as a normal call, 1 admit as a probe (holding the lease `token`),
--             2 reject.
--             16 is added when the stored value was corrupt (another type, an unknown
--             state): it read as absent and was deleted.
-- Publishes on ARGV[1] at each transition: 'gen|state|opened_at_ms|open_until_ms|now_ms|name'.

-- @include "lib/now_or_server_ms.lua"
-- @include "lib/publish_transition.lua"
-- @include "lib/override_expired.lua"
-- @include "lib/reap_expired.lua"
-- @include "lib/breaker_fields.lua"

local state_key = KEYS[1]
local probes_key = KEYS[2]
local channel = ARGV[1]
local name = ARGV[2]
local token = ARGV[3]
local half_open_max = tonumber(ARGV[4])
local lease_ms = tonumber(ARGV[5])
local key_ttl_ms = tonumber(ARGV[6])
local now_ms = tonumber(ARGV[7])
if not half_open_max or half_open_max < 1 or not lease_ms or lease_ms < 1
    or not key_ttl_ms or key_ttl_ms < 1 or not now_ms or token == '' then
  return redis.error_reply('MSFW_BADARG breaker_acquire: bad half_open_max, lease_ms, key_ttl_ms, now_ms or token')
end
now_ms = now_or_server_ms(now_ms)

local h, corrupt = breaker_fields(state_key, true, 'gen', 'fail', 'succ', 'opened_at', 'open_until',
  'fat')
local st = h[1] or 'closed'
local gen = tonumber(h[2]) or 0
local fail = tonumber(h[3]) or 0
local succ = tonumber(h[4]) or 0
local opened_at = tonumber(h[5]) or 0
local open_until = tonumber(h[6]) or 0
-- The failure count that tripped the breaker: kept into HALF_OPEN, cleared on closing.
local fat = tonumber(h[7]) or 0

local function transition(to)
  gen = gen + 1
  st = to
  fail = 0
  succ = 0
  if to == 'closed' then
    open_until = 0
    fat = 0
  end
  redis.call('DEL', probes_key)
  redis.call('HSET', state_key, 'st', st, 'gen', gen, 'fail', 0, 'succ', 0,
    'opened_at', opened_at, 'open_until', open_until, 'fat', fat)
  redis.call('PEXPIRE', state_key, key_ttl_ms)
  publish_transition(channel, name, gen, st, opened_at, open_until, now_ms)
end

local function reply(decision, probes, earliest)
  return {decision + (corrupt and 16 or 0), breaker_codes[st], gen, fail, succ, opened_at, open_until, now_ms, fat,
    probes, earliest}
end

-- A manual override whose TTL has passed returns to CLOSED with a new generation.
if override_expired(st, open_until, now_ms) then
  transition('closed')
end

if st == 'closed' or st == 'forced_closed' or st == 'disabled' then
  return reply(0, 0, 0)
end
if st == 'forced_open' or (st == 'open' and now_ms < open_until) then
  return reply(2, 0, 0)
end
if st == 'open' then
  transition('half_open')
end

-- HALF_OPEN: drop expired leases, then admit while a slot is free.
reap_expired(probes_key, now_ms)
local active = redis.call('ZCARD', probes_key)
if active < half_open_max then
  redis.call('ZADD', probes_key, now_ms + lease_ms, token)
  redis.call('PEXPIRE', probes_key, lease_ms * 2)
  redis.call('PEXPIRE', state_key, key_ttl_ms)
  return reply(1, active + 1, 0)
end
local first = redis.call('ZRANGE', probes_key, 0, 0, 'WITHSCORES')
return reply(2, active, tonumber(first[2]) or 0)
