-- drop_wrong_types(keys, kinds): delete each key that holds another type than kinds[i]
-- ('hash', 'zset', 'string', ...); returns how many were deleted. A foreign or corrupt
-- value is treated as absent rather than failing every call with WRONGTYPE; the
-- caller's writes then re-create the key with its expiry.
local function drop_wrong_types(keys, kinds)
  local dropped = 0
  for i, key in ipairs(keys) do
    local kind = redis.call('TYPE', key)['ok']
    if kind ~= 'none' and kind ~= kinds[i] then
      redis.call('DEL', key)
      dropped = dropped + 1
    end
  end
  return dropped
end
