-- now_or_server_ms(now_ms): the time a script runs at, in server ms.
-- A positive now_ms is an explicit time (tests pass one); 0 or less means read TIME.
-- @include "lib/server_time_ms.lua"
local function now_or_server_ms(now_ms)
  if now_ms <= 0 then
    return server_time_ms()
  end
  return now_ms
end
