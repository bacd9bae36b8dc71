-- breaker_codes: a breaker state's name -> the integer code replies and events carry.
local breaker_codes = {closed = 0, open = 1, half_open = 2, forced_open = 3, forced_closed = 4,
  disabled = 5}
