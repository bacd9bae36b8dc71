-- limits_ratelimit_acquire: one GCRA decision for a fleet-wide rate limit.
--
-- The key holds the "theoretical arrival time" (TAT) in server-time microseconds. A
-- request of cost c is admitted when now >= TAT + c*T - burst*T, where T is the emission
-- interval (per / rate); admitting moves TAT to max(TAT, now) + c*T. Time is the
-- server's TIME in microseconds (a rate of 1000/s has T = 1 ms, too coarse in ms), so
-- no client clock is involved. Doubles hold microsecond epochs exactly (< 2^53).
--
-- KEYS[1] - tat: string, TAT in microseconds
-- ARGV[1] - emission_us: T, microseconds between requests at the sustained rate (>= 1)
-- ARGV[2] - burst: requests admitted at once from idle (>= 1)
-- ARGV[3] - cost: requests this decision is for (1 <= cost <= burst)
-- ARGV[4] - now_us: explicit server time for tests; 0 means read TIME
-- Reply: array {admitted, retry_after_us, remaining, reset_after_us, now_us}
--   admitted: 1 admitted (TAT moved), 0 refused (nothing written).
--   retry_after_us: 0 when admitted, else the wait until this request would be admitted.
--   remaining: further requests of cost 1 admissible right now.
--   reset_after_us: time until the limiter is idle again (full burst available).
-- @include "lib/int_arg_error.lua"
-- @include "lib/arg_error.lua"

local tat_key = KEYS[1]
local emission_us = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local now_us = tonumber(ARGV[4])
local err = int_arg_error(emission_us, 1, 'emission_us')
  or int_arg_error(burst, 1, 'burst')
  or int_arg_error(cost, 1, 'cost')
  or arg_error(cost > burst, 'cost must not exceed burst')
  or int_arg_error(now_us, 0, 'now_us')
if err then
  return redis.error_reply(err)
end
if now_us <= 0 then
  local t = redis.call('TIME')
  now_us = tonumber(t[1]) * 1000000 + tonumber(t[2])
end

local tat = tonumber(redis.call('GET', tat_key))
-- A corrupt value reads as idle: worst case one extra burst, never a crash.
if not tat or tat < now_us then
  tat = now_us
end
local new_tat = tat + cost * emission_us
local allow_at = new_tat - burst * emission_us
if now_us < allow_at then
  local remaining = 0
  return {0, allow_at - now_us, remaining, tat - now_us, now_us}
end
redis.call('SET', tat_key, string.format('%d', new_tat))
-- The key is worthless once TAT is in the past: then it reads the same as no key.
redis.call('PEXPIRE', tat_key, math.floor((new_tat - now_us) / 1000) + 1)
local remaining = math.floor((now_us - (new_tat - burst * emission_us)) / emission_us)
return {1, 0, remaining, new_tat - now_us, now_us}
