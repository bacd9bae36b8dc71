-- transition_claim: let exactly one replica of the fleet log one breaker transition.
--
-- KEYS[1] claim  string {service}:breaker:logged:<name>:<generation>, any value
-- ARGV[1] ttl_ms how long the claim is kept; also the key's expiry (positive integer)
-- Reply: integer, 1 when this caller made the claim (it logs), 0 when another did.
--
-- Every replica subscribed to the service sees the transition's pub/sub message; the
-- first to claim its generation logs it. The key only has to outlive the delivery of
-- that one message, so a short expiry keeps nothing behind.
local claim_key = KEYS[1]
local ttl_ms = tonumber(ARGV[1])

if ttl_ms == nil or ttl_ms ~= math.floor(ttl_ms) or ttl_ms < 1 then
  return redis.error_reply('ERR transition_claim: ttl_ms must be a positive integer')
end

if redis.call('SET', claim_key, '1', 'NX', 'PX', ttl_ms) then
  return 1
end
return 0
