-- limits_retrybudget_spend: ask the fleet's retry budget for retries.
--
-- Finagle's and Envoy's budget, fleet-wide: over the last window_s seconds, retries may
-- be at most ratio * requests + min_per_second * window_s. Counts live in one hash per
-- service with one-second buckets ('q:<sec>' requests, 'r:<sec>' retries, see
-- lib/budget_sum.lua), so the window slides by the second. Requests are counted by
-- the breaker's own report (breaker_record with KEYS[4]), so counting them costs no round
-- trip; ARGV[1] carries only the requests of calls that have no breaker, batched by
-- each process.
--
-- KEYS[1] - budget: hash of per-second buckets
-- ARGV[1] - requests: requests to add to this second's bucket first (>= 0)
-- ARGV[2] - retries: retries asked for now (0 only records requests)
-- ARGV[3] - ratio_ppm: retry ratio in parts per million (>= 0)
-- ARGV[4] - min_per_second_milli: minimum retries per second, times 1000 (>= 0)
-- ARGV[5] - window_s: window in whole seconds (1..3600)
-- ARGV[6] - now_ms: explicit server time for tests; 0 means read TIME
-- Reply: array {granted, requests_in_window, retries_in_window, allowed_in_window, now_ms}
--   granted: retries granted and counted (all of ARGV[2] or 0).
--   allowed_in_window: retries the budget allows over the window (floor).
-- @include "lib/now_or_server_ms.lua"
-- @include "lib/int_arg_error.lua"
-- @include "lib/arg_error.lua"
-- @include "lib/budget_add_requests.lua"

local budget_key = KEYS[1]
local requests = tonumber(ARGV[1])
local retries = tonumber(ARGV[2])
local ratio_ppm = tonumber(ARGV[3])
local min_milli = tonumber(ARGV[4])
local window_s = tonumber(ARGV[5])
local now_ms = tonumber(ARGV[6])
local err = int_arg_error(requests, 0, 'requests')
  or int_arg_error(retries, 0, 'retries')
  or int_arg_error(ratio_ppm, 0, 'ratio_ppm')
  or int_arg_error(min_milli, 0, 'min_per_second_milli')
  or int_arg_error(window_s, 1, 'window_s')
  or arg_error(window_s > 3600, 'window_s must be at most 3600')
  or int_arg_error(now_ms, 0, 'now_ms')
if err then
  return redis.error_reply(err)
end
now_ms = now_or_server_ms(now_ms)

local sec = math.floor(now_ms / 1000)
budget_add_requests(budget_key, sec, requests, window_s)
local total_q, total_r = budget_sum(budget_key, sec - window_s + 1)
-- Integer maths: ratio in ppm and minimum in milli-retries keep the reply exact, and each
-- term is floored on its own (msfw_redis._limits.budget.retries_allowed is the model).
local allowed = math.floor((ratio_ppm * total_q) / 1000000) + math.floor((min_milli * window_s) / 1000)
local granted = 0
if retries > 0 and total_r + retries <= allowed then
  redis.call('HINCRBY', budget_key, 'r:' .. sec, retries)
  total_r = total_r + retries
  granted = retries
end
-- A bucket older than the window is never read again.
redis.call('PEXPIRE', budget_key, (window_s + 1) * 1000)
return {granted, total_q, total_r, allowed, now_ms}
