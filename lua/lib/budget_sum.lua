-- budget_sum(key, oldest): {requests, retries} in a retry budget's per-second buckets
-- from second oldest on. The budget is one hash per service, fields 'q:<sec>' (requests)
-- and 'r:<sec>' (retries), read by limits_retrybudget_spend and written by it and by
-- breaker_record (which counts requests with the breaker's report). Older and malformed
-- fields are deleted, as no window reads them again.
local function budget_sum(budget_key, oldest)
  local total_q, total_r = 0, 0
  local all = redis.call('HGETALL', budget_key)
  for i = 1, #all, 2 do
    local field = all[i]
    local bucket = tonumber(string.sub(field, 3))
    local count = tonumber(all[i + 1]) or 0
    local kind = string.sub(field, 1, 2)
    if not bucket or bucket < oldest or (kind ~= 'q:' and kind ~= 'r:') then
      redis.call('HDEL', budget_key, field)
    elseif kind == 'q:' then
      total_q = total_q + count
    else
      total_r = total_r + count
    end
  end
  return total_q, total_r
end
