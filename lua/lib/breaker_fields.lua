-- breaker_fields(state_key, repair, ...): HMGET of 'st' and the given fields of a breaker
-- state hash, and whether the stored value was corrupt. A key of another type, or a hash
-- whose 'st' is not a known state, reads as absent (every field false, as HMGET gives for
-- a missing one); with repair set the key is deleted, so the caller's HSET writes it
-- afresh (and gives it its TTL again).
-- @include "lib/breaker_codes.lua"
local function breaker_fields(state_key, repair, ...)
  local kind = redis.call('TYPE', state_key)['ok']
  if kind == 'none' then
    return redis.call('HMGET', state_key, 'st', ...), false
  end
  if kind == 'hash' then
    local h = redis.call('HMGET', state_key, 'st', ...)
    if not h[1] or breaker_codes[h[1]] ~= nil then
      return h, false
    end
  end
  if repair then
    redis.call('DEL', state_key)
  end
  local empty = {}
  for i = 1, select('#', ...) + 1 do
    empty[i] = false
  end
  return empty, true
end
