-- is_whole(value, min): true when value is a whole number >= min (no upper bound).
local function is_whole(value, min)
  return value ~= nil and value >= min and value == math.floor(value)
end
