-- int_arg_error(value, min, name): 'MSFW_BADARG <name> must be an integer >= <min>' unless
-- value passes is_int(value, min); nil when it does.
-- @include "lib/is_int.lua"
local function int_arg_error(value, min, name)
  if not is_int(value, min) then
    return 'MSFW_BADARG ' .. name .. ' must be an integer >= ' .. min
  end
  return nil
end
