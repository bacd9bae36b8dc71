-- is_int(value, min): true when value is a whole number from min up to 2^53 - 1.
-- The upper bound keeps every value exact in a Lua double and in a Redis integer reply.
local function is_int(value, min)
  return value ~= nil and value == math.floor(value) and value >= min
    and value <= 9007199254740991
end
