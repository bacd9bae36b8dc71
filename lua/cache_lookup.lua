-- cache_lookup: read a cached response, or lease the right to fill it, in one call.
--
-- KEYS[1] - the entry hash. Entry fields: v (envelope), sa (stored-at ms), fu (fresh-until
--           ms), su (stale-until ms), g (generation written under). Lease fields: lt
--           (token), lu (lease-until ms), lg (generation leased under), w (1 when
--           somebody waits for the fill).
-- KEYS[2] - the service's generation hash: field '_' is the service generation, one
--           field per cleared function holds that function's generation. Both keys
--           carry the same {service} hash tag.
-- ARGV[1] - mode: 'get' (serve or lease), 'peek' (serve, never lease or wait),
--           'force' (always lease, for force_refresh; the entry is still returned)
-- ARGV[2] - lease token to grant if a lease is due (random, chosen by the caller)
-- ARGV[3] - lease_ms: how long a granted lease lasts
-- ARGV[4] - the function's field in KEYS[2]
-- ARGV[5] - now_ms: 0 to read the server's TIME (tests pass a fixed time)
-- Short form for 'peek': ARGV = {'peek', function field}, meaning token '', lease_ms 1
--           and now_ms 0. The hot-key hit path sends it: every argument is packed and
--           sent on each call, and on a hit that packing is a visible share of the time.
--           A FRESH hit in the short form has its own, shorter reply (below).
-- Reply: one bulk string, 'state token stored_at_ms fresh_until_ms stale_until_ms
--          wait_ms flags now_ms value': eight space-separated head fields (token '-'
--          when none was granted; integers written with %d), one space, then the
--          envelope bytes (empty unless FRESH or STALE; they may contain spaces, so
--          split at the first eight spaces only). One bulk instead of an array: the hit
--          path's reply parse is a measurable share of its latency.
--   state: 'FRESH' (entry within fresh-until), 'STALE' (past fresh-until, before
--          stale-until), 'MISS' (no usable entry) or 'WAIT' (no usable entry and another
--          caller holds the fill lease: wait_ms is what is left of that lease)
--   token: ARGV[2] when this call was granted the lease, else ''
--   value: the envelope when state is FRESH or STALE, else ''
--   flags: 1 = an expired lease was taken over; 2 = a malformed entry was deleted;
--          3 = both
-- Short-form FRESH reply: 'F stored_at_ms fresh_until_ms stale_until_ms sec usec value',
--          the three times as the entry stores them and the server's TIME as its two
--          parts (now_ms = sec * 1000 + usec // 1000), then the envelope. It is built
--          by one concatenation, with no string.format and no number printed: under
--          callgrind that is about a third fewer instructions in Redis per hit. Any
--          other outcome of the short form answers in the long form above.
--
-- 'get' on a FRESH entry leases nothing. On a STALE entry it grants a refresh lease to
-- exactly one caller fleet-wide (the others get STALE without a token). On a MISS it
-- grants a fill lease, or answers WAIT while a live lease exists. Entries and leases
-- written under an older generation are ignored: clearing a function or a service is
-- one HINCRBY (cache_invalidate), never a scan.

-- Fast path, before any helper is defined (each `local function` is a closure built on
-- every call): a FRESH entry under the current generation, asked for with 'get' or
-- 'peek', is served with two HMGETs and TIME, no lease or Vary work and no table of
-- locals. It checks the arguments exactly as the full path does and answers exactly
-- what the full path would; anything else (bad arguments, wrong types, a malformed,
-- stale, missing or foreign-generation entry) falls through to the full path below.
local argv = ARGV
if #argv == 2 and argv[1] == 'peek' then
  -- The hot-key hit: the fewest Redis calls, table reads and strings that still check
  -- everything the full path checks for a FRESH answer (the generation, every time
  -- field a number, now before fresh-until and stale-until).
  local ff = argv[2]
  if ff ~= '' and ff ~= '_' then
    local e = redis.pcall('HMGET', KEYS[1], 'fu', 'g', 'v', 'sa', 'su')
    if e[3] then -- an error reply has no [3]: the full path deletes what is not a hash
      local gs = redis.pcall('HMGET', KEYS[2], '_', ff)
      local fu, su = tonumber(e[1]), tonumber(e[5])
      if fu and su and tonumber(e[4]) and not gs.err
          and e[2] == (gs[1] or '0') .. ':' .. (gs[2] or '0') then
        local t = redis.call('TIME')
        -- Unrounded: now < fu implies floor(now) < fu, so what is FRESH here is FRESH
        -- in the full path too (which rounds now down to whole ms).
        local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
        if now < fu and now < su then
          return 'F ' .. e[4] .. ' ' .. e[1] .. ' ' .. e[5] .. ' ' .. t[1] .. ' ' .. t[2]
            .. ' ' .. e[3]
        end
      end
    end
  end
  argv = {'peek', '', '1', ff, '0'}
end
do
  local m, lease, ff, at = argv[1], tonumber(argv[3]), argv[4], tonumber(argv[5])
  if (m == 'peek' or (m == 'get' and argv[2] ~= '')) and lease and lease >= 1
      and lease == math.floor(lease) and ff ~= '' and ff ~= '_'
      and at and at >= 0 and at == math.floor(at) then
    local gs = redis.pcall('HMGET', KEYS[2], '_', ff)
    local e = redis.pcall('HMGET', KEYS[1], 'fu', 'g', 'v', 'sa', 'su')
    if not gs.err and not e.err and e[3] then
      local fu, sa, su = tonumber(e[1]), tonumber(e[4]), tonumber(e[5])
      if fu and sa and su and e[2] == (gs[1] or '0') .. ':' .. (gs[2] or '0') then
        if at == 0 then
          local t = redis.call('TIME')
          at = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
        end
        if at < fu and at < su then
          return string.format('FRESH - %d %d %d 0 0 %d ', sa, fu, su, at) .. e[3]
        end
      end
    end
  end
end

-- @include "lib/arg_error.lua"
-- @include "lib/is_whole.lua"
-- @include "lib/now_or_server_ms.lua"

local function head(state, tok, sa, fu, su, wait, fl, now)
  if tok == '' then tok = '-' end
  return string.format('%s %s %d %d %d %d %d %d', state, tok, sa, fu, su, wait, fl, now)
end

local entry_key = KEYS[1]
local gen_key = KEYS[2]
local mode = argv[1]
local token = argv[2]
local lease_ms = tonumber(argv[3])
local function_field = argv[4]
local now_ms = tonumber(argv[5])

local err = arg_error(mode ~= 'get' and mode ~= 'peek' and mode ~= 'force',
    'mode must be get, peek or force')
  or arg_error(mode ~= 'peek' and token == '', 'a lease token is required')
  or arg_error(not is_whole(lease_ms, 1), 'lease_ms must be a positive integer')
  or arg_error(function_field == '' or function_field == '_',
    'function field must be non-empty and not _')
  or arg_error(not is_whole(now_ms, 0), 'now_ms must be an integer >= 0')
if err then
  return redis.error_reply(err)
end
now_ms = now_or_server_ms(now_ms)

local flags = 0
local gens = redis.pcall('HMGET', gen_key, '_', function_field)
if gens.err then
  -- Not a hash: nothing we wrote. Dropping it resets every generation to 0, which is
  -- safe because entries are only trusted when their generation matches exactly.
  redis.call('DEL', gen_key)
  gens = {}
end
local gen = (gens[1] or '0') .. ':' .. (gens[2] or '0')

local f = redis.pcall('HMGET', entry_key, 'v', 'sa', 'fu', 'su', 'g', 'lt', 'lu', 'lg', 'w')
if f.err then
  redis.call('DEL', entry_key)
  flags = flags + 2
  f = {}
end
local value = f[1]
local stored_at = tonumber(f[2])
local fresh_until = tonumber(f[3])
local stale_until = tonumber(f[4])
local entry_gen = f[5]
local lease_token = f[6]
local lease_until = tonumber(f[7])
local lease_gen = f[8]
local waiting = f[9]

if value and not (stored_at and fresh_until and stale_until and entry_gen) then
  redis.call('HDEL', entry_key, 'v', 'sa', 'fu', 'su', 'g')
  flags = flags + 2
  value = false
end

local usable = value and entry_gen == gen and now_ms < stale_until
local lease_live = lease_token and lease_gen == gen and lease_until and now_ms < lease_until

local state = 'MISS'
if usable then
  if now_ms < fresh_until then state = 'FRESH' else state = 'STALE' end
end

local grant = false
if mode == 'force' then
  grant = true
elseif mode == 'get' and state ~= 'FRESH' then
  if lease_live then
    if state == 'MISS' then state = 'WAIT' end
  else
    grant = true
  end
end

local reply_token = ''
local wait_ms = 0
if grant then
  if lease_token and not lease_live and lease_gen == gen then
    flags = flags + 1
  end
  redis.call('HSET', entry_key, 'lt', token, 'lu', now_ms + lease_ms, 'lg', gen)
  -- Keep the hash twice the lease so an expired, unfilled lease is still seen (and
  -- counted as a takeover); never shorten the life of a usable entry.
  local keep_ms = 2 * lease_ms
  if usable and stale_until - now_ms > keep_ms then keep_ms = stale_until - now_ms end
  redis.call('PEXPIRE', entry_key, keep_ms)
  reply_token = token
elseif state == 'WAIT' then
  if not waiting then
    -- The key already expires after the live lease (set when it was granted).
    redis.call('HSET', entry_key, 'w', 1)
  end
  wait_ms = lease_until - now_ms
end

if not usable then
  return head(state, reply_token, 0, 0, 0, wait_ms, flags, now_ms) .. ' '
end
return head(state, reply_token, stored_at, fresh_until, stale_until, wait_ms, flags, now_ms)
  .. ' ' .. value
