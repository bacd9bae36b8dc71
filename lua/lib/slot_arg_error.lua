-- slot_arg_error(key, ...): the MSFW_BADARG error text when a channel does not carry the
-- {hash tag} of key (so it hashes to another slot), else nil. A script publishes only on
-- channels of its own slot: on Cluster, SPUBLISH from a script to another slot's channel
-- reaches nobody (Redis 7.0 returns 0 silently).
local function slot_arg_error(key, ...)
  local tag = string.match(key, '{[^}]*}')
  for i = 1, select('#', ...) do
    local channel = select(i, ...)
    if tag == nil or string.match(channel, '{[^}]*}') ~= tag then
      return 'MSFW_BADARG channel ' .. tostring(channel) .. ' must carry the hash tag '
        .. tostring(tag) .. ' of the keys (a script publishes only in its own slot)'
    end
  end
  return nil
end
