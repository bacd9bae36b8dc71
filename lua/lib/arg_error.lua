-- arg_error(bad, message): the MSFW_BADARG error text when bad holds, else nil.
-- Checks chain with `or` so the first failing one names the argument:
--   local err = arg_error(x == '', 'x must not be empty') or ...
--   if err then return redis.error_reply(err) end
local function arg_error(bad, message)
  if bad then
    return 'MSFW_BADARG ' .. message
  end
  return nil
end
