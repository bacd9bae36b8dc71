"""Breaker transition events for users (``ServiceSDK.on_breaker_transition``).

Transition scripts publish every change on the service's breaker channel, so each
replica subscribed to the service hears it and calls its callbacks. Each transition is
also logged at INFO once per fleet, not once per replica: the replica that claims the
transition's generation first (one ``SET NX`` in ``lua/transition_claim.lua``) logs it,
with the fields as ``extra=`` for structured loggers.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from msfw_redis._breaker.views import SERVICE_SCOPE, TransitionEvent, TransitionListener
from msfw_redis._callbacks import call_logged
from msfw_redis._exceptions import StoreError
from msfw_redis._store.replies import reply_int

if TYPE_CHECKING:
    from msfw_redis._store.store import Store

__all__ = ["CLAIM_TTL_MS", "TransitionFeed"]

logger = logging.getLogger("msfw_redis.breaker.transitions")

#: How long a logged-transition claim lives: far longer than one pub/sub delivery.
CLAIM_TTL_MS = 60_000


class TransitionFeed:
    """Filters breaker events down to transitions, logs each once, calls the callbacks."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._callbacks: list[TransitionListener] = []
        self._generations: dict[tuple[str, str | None], int] = {}
        self.logged = 0

    def add(self, callback: TransitionListener) -> None:
        """Call ``callback(event)`` on every transition this replica hears."""
        self._callbacks.append(callback)

    async def __call__(self, event: TransitionEvent) -> None:
        """The hub listener: one delivery per generation (a probe slot freeing is no news)."""
        key = (event.service, event.endpoint)
        if event.generation <= self._generations.get(key, -1):
            return
        self._generations[key] = event.generation
        await self._log_once(event)
        for callback in list(self._callbacks):
            await call_logged(callback, event, log=logger, what="breaker transition callback")

    async def _log_once(self, event: TransitionEvent) -> None:
        name = event.endpoint if event.endpoint is not None else SERVICE_SCOPE
        key = self._store.keys.key(event.service, "breaker", "logged", name, str(event.generation))
        try:
            claimed = reply_int(await self._store.run("transition_claim", [key], [CLAIM_TTL_MS]))
        except StoreError as exc:
            # The store being down must not silence a transition: log it here instead.
            logger.debug("transition claim failed, logging locally: %s", exc)
            claimed = 1
        if not claimed:
            return
        self.logged += 1
        logger.info(
            "breaker %s%s: %s -> %s (generation %d)",
            event.service,
            "" if event.endpoint is None else f":{event.endpoint}",
            event.from_state or "unknown",
            event.state,
            event.generation,
            extra={
                "msfw_service": event.service,
                "msfw_endpoint": event.endpoint,
                "msfw_from_state": event.from_state,
                "msfw_to_state": event.state,
                "msfw_generation": event.generation,
                "msfw_server_time": event.at,
            },
        )
