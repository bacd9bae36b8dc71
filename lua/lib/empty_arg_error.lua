-- empty_arg_error(name, ...): 'MSFW_BADARG <name> must not be empty' when any of the
-- values is missing (nil) or the empty string; nil when all are set.
local function empty_arg_error(name, ...)
  for i = 1, select('#', ...) do
    local value = select(i, ...)
    if value == nil or value == '' then
      return 'MSFW_BADARG ' .. name .. ' must not be empty'
    end
  end
  return nil
end
