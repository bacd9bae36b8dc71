"""What a breaker is given by the hub that makes it: the :class:`BreakerHost` protocol,
and the script params a user's config turns into.

A Protocol rather than the hub itself, so the breaker depends on the few services it
uses (passed in, never reached into) and :mod:`msfw_redis._breaker.hub` can import the
breaker without a cycle.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from msfw_redis._breaker.machine import BreakerParams

if TYPE_CHECKING:
    import asyncio
    from collections.abc import Coroutine

    from msfw_redis._breaker.flusher import Flushable
    from msfw_redis._config import CircuitBreakerConfig, StoreFailurePolicy
    from msfw_redis._store.store import Store

__all__ = ["BreakerHost", "params_from_config"]


def params_from_config(config: CircuitBreakerConfig) -> BreakerParams:
    """The integer-millisecond policy the scripts take, from a user's config."""
    rate = config.failure_rate_threshold
    return BreakerParams(
        failure_threshold=config.failure_threshold,
        success_threshold=config.success_threshold,
        open_ms=max(1, round(config.timeout * 1000)),
        rate_permille=0 if rate is None else max(1, round(rate * 10)),
        minimum_calls=config.minimum_calls,
        window_ms=max(10, round(config.sliding_window * 1000)),
        half_open_max=config.half_open_max_calls,
        lease_ms=max(1, round(config.effective_probe_lease * 1000)),
        key_ttl_ms=round(config.state_ttl * 1000),
    )


class BreakerHost(Protocol):
    """What a breaker needs from the hub that made it (passed in, never reached into)."""

    store: Store
    failure_policy: StoreFailurePolicy

    async def subscribe(self, service: str) -> None:
        """Subscribe to ``service``'s breaker channel (once per service)."""

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        """Run ``coro`` in the background, logged if it fails."""

    @property
    def refresh_slots(self) -> asyncio.Semaphore:
        """Bounds the background mirror refreshes in flight, across all breakers."""

    async def index(self, service: str, name: str, retention_ms: int) -> None:
        """List breaker ``name`` of ``service`` in the fleet indexes."""

    async def enter(self, service: str, retention_ms: int) -> None:
        """Subscribe to ``service`` and list it in the services index (first use)."""

    def params_for(self, config: CircuitBreakerConfig) -> BreakerParams:
        """The script params of ``config``, shared by every breaker using it."""

    def schedule_flush(self, breaker: Flushable, interval: float) -> None:
        """Flush ``breaker``'s batched successes ``interval`` seconds from now."""
