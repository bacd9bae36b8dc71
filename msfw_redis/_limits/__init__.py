"""Fleet-wide limits: bulkhead, GCRA rate limiter, retry budget and Retry-After gate."""
