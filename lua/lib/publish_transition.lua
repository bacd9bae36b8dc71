-- publish_transition(channel, name, gen, st, opened_at, open_until, now_ms): tell every
-- replica's mirror a breaker's new state:
-- 'gen|state|opened_at_ms|open_until_ms|now_ms|name'.
-- @include "lib/breaker_codes.lua"
-- @include "lib/publish.lua"
local function publish_transition(channel, name, gen, st, opened_at, open_until, now_ms)
  publish(channel, gen .. '|' .. breaker_codes[st] .. '|' .. opened_at .. '|'
    .. open_until .. '|' .. now_ms .. '|' .. name)
end
