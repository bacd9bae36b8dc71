-- override_expired(st, open_until, now_ms): true when st is a manual override (forced_open,
-- forced_closed, disabled) with a TTL that has passed, so the breaker is CLOSED again.
local function override_expired(st, open_until, now_ms)
  return (st == 'forced_open' or st == 'forced_closed' or st == 'disabled') and open_until > 0
    and now_ms >= open_until
end
