-- clock_now: the Redis server's clock, the one clock every replica agrees on.
--
-- KEYS: none
-- ARGV: none
-- Reply: integer, milliseconds since the Unix epoch by the server's clock.
--
-- Clients call this a few times at start-up and keep the offset to their own clock,
-- so they can compare server-time deadlines (breaker open-until, cache fresh-until)
-- without a round trip.

-- @include "lib/server_time_ms.lua"

return server_time_ms()
