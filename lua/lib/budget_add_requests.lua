-- budget_add_requests(key, sec, n, window_s): add n requests to second sec of a retry
-- budget's buckets (see lib/budget_sum.lua; the key must be a hash or absent: callers
-- drop a key of another type first). The first write of a second also prunes buckets
-- older than the window, so a hash only ever written by reports (no retry decision reads
-- it) holds at most window_s + 1 request buckets. The expiry is refreshed to window_s +
-- 1 s after this write, when no bucket in it can be read again.
-- @include "lib/budget_sum.lua"
local function budget_add_requests(budget_key, sec, n, window_s)
  if n <= 0 then
    return
  end
  local field = 'q:' .. sec
  local added = redis.pcall('HINCRBY', budget_key, field, n)
  if type(added) == 'table' and added.err then
    -- A corrupt (non-integer) bucket must not fail the breaker's report: replace it.
    redis.call('HDEL', budget_key, field)
    added = redis.call('HINCRBY', budget_key, field, n)
  end
  if added == n then
    budget_sum(budget_key, sec - window_s + 1)
  end
  redis.call('PEXPIRE', budget_key, (window_s + 1) * 1000)
end
