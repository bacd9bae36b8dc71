"""The fleet-wide circuit breaker: the pure state machine, the local mirror on the hot path, and
the hub that owns every breaker of an SDK.
"""
