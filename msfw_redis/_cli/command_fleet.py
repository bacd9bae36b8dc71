"""The components an inspection command needs, built on one store of the fleet's Redis.

No background work is started (no health probing, heartbeats or pub/sub), so a command
reads and changes the shared state through the same Lua scripts the SDK uses and
leaves nothing running. Also the checks that a named service exists.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from msfw_redis._breaker.hub import BreakerHub
from msfw_redis._cache.cache import ResponseCache
from msfw_redis._cli.exits import EXIT_UNKNOWN, EXIT_USAGE, CliError
from msfw_redis._cli.fleet_view import FleetReader
from msfw_redis._cli.output import redact_url
from msfw_redis._exceptions import ConfigurationError, StoreError
from msfw_redis._registry.health import HealthMonitor
from msfw_redis._registry.registry import ServiceRegistry
from msfw_redis._store.connection import ENV_REDIS_URL
from msfw_redis._store.store import Store

if TYPE_CHECKING:
    from types import TracebackType

__all__ = ["CLI_OP_TIMEOUT", "CommandFleet"]

#: Seconds any one Redis operation of the CLI may take: an unreachable store fails fast.
CLI_OP_TIMEOUT = 1.0


class CommandFleet:
    """The components a command needs, on one store, with no background tasks."""

    def __init__(self, url: str, prefix: str) -> None:
        self.url = url
        self.label = redact_url(url)
        self.prefix = prefix
        try:
            self.store = Store.from_url(url, op_timeout=CLI_OP_TIMEOUT, key_prefix=prefix)
        except (ConfigurationError, ValueError) as exc:
            raise CliError(str(exc), EXIT_USAGE) from None
        self.hub = BreakerHub(self.store, None)
        self.registry = ServiceRegistry(self.store, None)
        self.health = HealthMonitor(self.store, self.registry, None)
        self.cache = ResponseCache(self.store, None)

    async def __aenter__(self) -> CommandFleet:
        try:
            await self.store.start()
        except StoreError as exc:
            await self.store.aclose()
            raise CliError(f"cannot reach the store at {self.label}: {exc}", EXIT_USAGE) from None
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.cache.aclose()
        try:
            await self.hub.aclose()
        except StoreError as err:
            logging.getLogger("msfw_redis.cli").debug("breaker flush on exit failed: %s", err)
        await self.store.aclose()

    def reader(self) -> FleetReader:
        return FleetReader(self.store, self.hub, self.registry, self.health)

    @property
    def private(self) -> bool:
        return self.url.startswith("memory://")

    def empty_hint(self) -> str:
        if self.private:
            return (
                "memory:// is a store private to this one process, so it is empty here; "
                f"pass --redis-url (or set {ENV_REDIS_URL}) to inspect a fleet's Redis"
            )
        return f"nothing recorded under prefix {self.prefix!r} at {self.label}"

    async def known_services(self) -> set[str]:
        """Services in the registry index or with a breaker in the breaker index."""
        names = set(await self.registry.services())
        names.update(state.service for state in await self.hub.fleet())
        return names

    async def require_known(self, service: str, *, force: bool = False) -> None:
        if force:
            return
        known = await self.known_services()
        if service in known:
            return
        listing = ", ".join(sorted(known)) if known else "none"
        raise CliError(
            f"unknown service {service!r}: no registry entry and no breaker under prefix "
            f"{self.prefix!r} at {self.label} (known services: {listing})",
            EXIT_UNKNOWN,
        )
