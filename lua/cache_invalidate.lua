-- cache_invalidate: clear every entry of a service or of one function in O(1).
--
-- KEYS[1] - the service's generation hash: field '_' is the service generation, one
--           field per cleared function holds that function's generation
-- ARGV[1] - the field to bump: '_' for the whole service, else the function's field
-- ARGV[2] - keep_ms: the least time the generation hash is kept from now
-- ARGV[3] - optional: the channel on which near caches are told '<field> G'
-- ARGV[last] - publish mode, appended by the store: 'spublish' on Cluster, else 'publish' (lib/publish.lua)
-- Reply: integer, the field's new generation
--
-- Entries and leases remember the generation they were written under, and
-- cache_lookup / cache_fill trust them only while it matches, so one HINCRBY retires
-- them all; they then expire on their own TTL. The hash must outlive every lease taken
-- before the bump (else its expiry would turn the counter back to 0 and revive them),
-- hence keep_ms, which the caller sets well above any lease; cache_fill extends it to
-- cover every entry.

-- @include "lib/arg_error.lua"
-- @include "lib/is_whole.lua"
-- @include "lib/publish.lua"

local gen_key = KEYS[1]
local field = ARGV[1]
local keep_ms = tonumber(ARGV[2])
local channel = ARGV[3] or ''

local err = arg_error(field == '', 'field must not be empty')
  or arg_error(not is_whole(keep_ms, 1), 'keep_ms must be a positive integer')
if err then
  return redis.error_reply(err)
end

local ok = redis.pcall('TYPE', gen_key)
if ok.ok ~= 'hash' and ok.ok ~= 'none' then
  redis.call('DEL', gen_key)
end
local gen = redis.call('HINCRBY', gen_key, field, 1)
local ttl = redis.call('PTTL', gen_key)
if ttl < keep_ms then
  redis.call('PEXPIRE', gen_key, keep_ms)
end
if channel ~= '' then
  -- Near caches drop their copies of the service (or function) at once.
  publish(channel, field .. ' G')
end
return gen
