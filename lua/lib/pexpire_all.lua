-- pexpire_all(keys, ttl_ms): give every key in the list the expiry ttl_ms, so no key a
-- script touches lives forever once its owner is gone.
local function pexpire_all(keys, ttl_ms)
  for _, key in ipairs(keys) do
    redis.call('PEXPIRE', key, ttl_ms)
  end
end
