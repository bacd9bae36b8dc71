"""The demo's flaky ``order-service``: a small asyncio HTTP/1.1 server on loopback.

It runs in the demo's parent process, on one listener per instance (``order-1`` and
``order-2``), so that the parent can change its behaviour per phase and count what
reaches it, the *origin*, which is where the guarantees are measured:

* ``GET /orders`` answers 200, or 503 while the phase is ``failing``;
* ``GET /catalog/<sku>`` answers 200 after ``catalog_delay`` seconds (a slow lookup,
  the reason it is cached); calls are counted per path, so a cold key that reached
  the origin more than once would show;
* ``GET /health`` answers 200 while the instance lives.

Each ``/orders`` or ``/catalog`` request reads the fleet's breaker state from Redis when
it arrives. A request that arrives while the breaker is HALF_OPEN is a probe: the
server counts them and how many were in flight at once.

:meth:`DemoOrigin.crash` kills an instance from the outside: its listener closes and
its open connections are reset, as when a process dies.
"""

from __future__ import annotations

import asyncio
import functools
import json
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from msfw_redis._exceptions import StoreError
from msfw_redis._shutdown import logged

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Sequence

    from msfw_redis._cli.demo_plan import Phase

__all__ = ["DemoOrigin", "OriginStats"]

_REASONS = {200: "OK", 404: "Not Found", 503: "Service Unavailable"}


@dataclass(slots=True)
class OriginStats:
    """What reached the service.

    Attributes:
        orders: ``/orders`` requests received; ``orders_failed`` of them answered 503.
        catalog: origin calls per catalogue path.
        probes: requests that arrived while the fleet's breaker was HALF_OPEN.
        max_probes_in_flight: the most such requests being served at once.
        while_open: requests that arrived while the breaker was OPEN: admitted by a
            replica just before the trip reached it (pub/sub takes a few ms).
        by_instance: requests per instance.
    """

    orders: int = 0
    orders_failed: int = 0
    catalog: Counter[str] = field(default_factory=Counter)
    probes: int = 0
    probes_in_flight: int = 0
    max_probes_in_flight: int = 0
    while_open: int = 0
    by_instance: Counter[str] = field(default_factory=Counter)


class DemoOrigin:
    """The flaky service. ``phase()`` says how to behave; ``breaker_state()`` returns the
    fleet's breaker state label as Redis has it now (it may raise ``StoreError``)."""

    def __init__(
        self,
        phase: Callable[[], Phase],
        breaker_state: Callable[[], Awaitable[str]],
        *,
        catalog_delay: float,
    ) -> None:
        self.stats = OriginStats()
        self._phase = phase
        self._breaker_state = breaker_state
        self._catalog_delay = catalog_delay
        self._servers: dict[str, asyncio.Server] = {}
        self._connections: dict[str, set[asyncio.StreamWriter]] = {}
        self._handlers: dict[str, set[asyncio.Task[Any]]] = {}

    async def start(self, names: Sequence[str], host: str = "127.0.0.1") -> None:
        """Listen for each instance name on a free port of ``host``."""
        for name in names:
            self._connections[name] = set()
            self._handlers[name] = set()
            self._servers[name] = await asyncio.start_server(
                functools.partial(self._serve, name), host, 0
            )

    def port(self, name: str) -> int:
        """The port instance ``name`` listens on."""
        sockets = self._servers[name].sockets
        return int(sockets[0].getsockname()[1])

    def alive(self, name: str) -> bool:
        """False once :meth:`crash` killed the instance."""
        return name in self._servers

    async def crash(self, name: str) -> None:
        """Stop listening as ``name`` and reset its open connections."""
        server = self._servers.pop(name, None)
        if server is None:
            return
        server.close()
        for writer in list(self._connections.get(name, ())):
            writer.transport.abort()
        # Let the handlers see their connections end (cancelling them instead trips an
        # asyncio 3.11 bug that logs a traceback for a cancelled connection handler).
        handlers = self._handlers.get(name, set())
        if handlers:
            await asyncio.wait(list(handlers), timeout=2.0)
        with logged("demo_origin close"):
            await server.wait_closed()

    async def aclose(self) -> None:
        """Stop every instance."""
        for name in list(self._servers):
            await self.crash(name)

    # -- HTTP --------------------------------------------------------------------------

    async def _serve(
        self, name: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        connections = self._connections[name]
        connections.add(writer)
        task = asyncio.current_task()
        if task is not None:
            self._handlers[name].add(task)
            task.add_done_callback(self._handlers[name].discard)
        try:
            while True:
                request_line = await reader.readline()
                parts = request_line.decode("latin-1").split()
                if len(parts) != 3:
                    return
                method, target = parts[0], parts[1]
                length, close = 0, False
                while True:
                    line = await reader.readline()
                    if line in (b"\r\n", b"\n", b""):
                        break
                    key, _, value = line.decode("latin-1").partition(":")
                    key, value = key.strip().lower(), value.strip().lower()
                    if key == "content-length":
                        length = int(value)
                    elif key == "connection" and value == "close":
                        close = True
                if length:
                    await reader.readexactly(length)
                status, body, probe = await self._respond(name, method, target.split("?")[0])
                try:
                    writer.write(_response(status, body, close))
                    await writer.drain()
                finally:
                    if probe:
                        self.stats.probes_in_flight -= 1
                if close:
                    return
        except (ConnectionError, asyncio.IncompleteReadError, ValueError):
            return
        finally:
            connections.discard(writer)
            writer.close()

    async def _respond(self, name: str, method: str, path: str) -> tuple[int, bytes, bool]:
        """``(status, JSON body, counted as a probe in flight)``."""
        if path == "/health":
            return 200, _json({"status": "up", "instance": name}), False
        if method != "GET" or not (path == "/orders" or path.startswith("/catalog/")):
            return 404, _json({"error": "not found", "path": path}), False
        stats = self.stats
        stats.by_instance[name] += 1
        probe = await self._classify()
        if path == "/orders":
            stats.orders += 1
            if self._phase() == "failing":
                stats.orders_failed += 1
                return 503, _json({"error": "order database unavailable"}), probe
            return 200, _json({"orders": [{"id": 1, "total": 42}], "instance": name}), probe
        stats.catalog[path] += 1
        await asyncio.sleep(self._catalog_delay)
        sku = path.rsplit("/", 1)[-1]
        return 200, _json({"sku": sku, "price": 9.99, "instance": name}), probe

    async def _classify(self) -> bool:
        try:
            state = await self._breaker_state()
        except StoreError:
            return False
        stats = self.stats
        if state == "half_open":
            stats.probes += 1
            stats.probes_in_flight += 1
            stats.max_probes_in_flight = max(stats.max_probes_in_flight, stats.probes_in_flight)
            return True
        if state == "open":
            stats.while_open += 1
        return False


def _json(data: object) -> bytes:
    return json.dumps(data, separators=(",", ":")).encode()


def _response(status: int, body: bytes, close: bool) -> bytes:
    head = (
        f"HTTP/1.1 {status} {_REASONS.get(status, 'Unknown')}\r\n"
        "Content-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n"
        f"Connection: {'close' if close else 'keep-alive'}\r\n\r\n"
    )
    return head.encode("latin-1") + body
