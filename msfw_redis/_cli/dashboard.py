"""``msfw-redis dashboard``: a live web page of every service in the fleet.

Starlette and uvicorn (the ``dashboard`` extra). Routes: ``/`` the page
(:mod:`msfw_redis._cli.dashboard_page`), ``/api/fleet`` the fleet view as JSON, and
``/events`` a Server-Sent Events stream.

Updates are pushed, not polled: the server subscribes to every known service's breaker
and health channels on its own pub/sub connection, and after any message it re-reads
the fleet once and sends the view to every open stream. A slow refresh (every
``REFRESH_SECONDS``) picks up new services and covers a lost message; the page also
re-reads ``/api/fleet`` every 15 s.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
from typing import TYPE_CHECKING, Any

from msfw_redis._store.events import EventBus

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable

    from starlette.requests import Request

    from msfw_redis._cli.fleet_view import FleetReader
    from msfw_redis._store.store import Store

__all__ = ["REFRESH_SECONDS", "FleetPublisher", "build_app", "run_dashboard"]

logger = logging.getLogger("msfw_redis.cli")

#: Seconds between full re-reads of the fleet (the safety net behind pub/sub).
REFRESH_SECONDS = 10.0
#: An SSE comment this often keeps proxies from closing an idle stream.
_KEEPALIVE_SECONDS = 15.0


class FleetPublisher:
    """Re-reads the fleet on pub/sub events and fans the view out to SSE streams."""

    def __init__(self, store: Store, reader: FleetReader) -> None:
        self._store = store
        self._reader = reader
        self._bus = EventBus(store)
        self._streams: set[asyncio.Queue[str]] = set()
        self._subscribed: set[str] = set()
        self._dirty = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.latest: dict[str, Any] | None = None

    async def start(self) -> None:
        """Read the fleet, subscribe to its services, start the publishing loop."""
        await self._publish()
        self._task = asyncio.create_task(self._run(), name="msfw-dashboard")

    async def aclose(self) -> None:
        """Stop the loop and the pub/sub connection."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._bus.aclose()

    def _on_message(self, _payload: bytes) -> None:
        self._dirty.set()

    async def _follow(self, services: set[str]) -> None:
        keys = self._store.keys
        for service in sorted(services - self._subscribed):
            self._subscribed.add(service)
            for component in ("breaker", "health"):
                await self._bus.subscribe(
                    keys.channel(service, component), self._on_message, wait=False
                )

    async def _publish(self) -> None:
        view = await self._reader.read()
        await self._follow({b.service for b in view.breakers} | {s.service for s in view.services})
        self.latest = view.as_json()
        message = f"event: fleet\ndata: {json.dumps(self.latest)}\n\n"
        for queue in list(self._streams):
            if queue.qsize() > 8:
                continue  # a stalled reader gets the next view, not an unbounded backlog
            queue.put_nowait(message)

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(REFRESH_SECONDS):
                    await self._dirty.wait()
            self._dirty.clear()
            try:
                await self._publish()
            except Exception:
                logger.exception("dashboard refresh failed")

    async def stream(self) -> AsyncIterator[str]:
        """One client's SSE stream: the latest view at once, then every new one."""
        queue: asyncio.Queue[str] = asyncio.Queue()
        self._streams.add(queue)
        try:
            if self.latest is not None:
                yield f"event: fleet\ndata: {json.dumps(self.latest)}\n\n"
            while True:
                try:
                    async with asyncio.timeout(_KEEPALIVE_SECONDS):
                        yield await queue.get()
                except TimeoutError:
                    yield ": keep-alive\n\n"
        finally:
            self._streams.discard(queue)


def build_app(publisher: FleetPublisher, reader: FleetReader) -> Any:
    """The Starlette application (imports the ``dashboard`` extra)."""
    from starlette.applications import Starlette
    from starlette.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
    from starlette.routing import Route

    from msfw_redis._cli.dashboard_page import PAGE

    async def page(_: Request) -> Response:
        return HTMLResponse(PAGE)

    async def fleet(_: Request) -> Response:
        return JSONResponse((await reader.read()).as_json())

    async def events(_: Request) -> Response:
        headers = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
        return StreamingResponse(
            publisher.stream(), media_type="text/event-stream", headers=headers
        )

    return Starlette(
        routes=[Route("/", page), Route("/api/fleet", fleet), Route("/events", events)]
    )


async def run_dashboard(
    store: Store,
    reader: FleetReader,
    host: str,
    port: int,
    *,
    started: Callable[[int], None] | None = None,
) -> None:
    """Serve the dashboard on ``host:port`` until cancelled.

    ``started(port)`` is called once the socket listens (port 0 picks a free one).
    """
    try:
        import uvicorn
    except ImportError:
        raise RuntimeError(
            "the dashboard needs the 'dashboard' extra: pip install 'msfw-redis[dashboard]'"
        ) from None
    publisher = FleetPublisher(store, reader)
    await publisher.start()
    # The socket is bound here, not by uvicorn, so the caller learns the port at once.
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        await publisher.aclose()
        raise
    sock.listen(128)
    config = uvicorn.Config(
        build_app(publisher, reader),
        log_level="warning",
        lifespan="off",
        timeout_graceful_shutdown=1,
    )
    server = uvicorn.Server(config)
    if started is not None:
        started(sock.getsockname()[1])
    try:
        await server.serve(sockets=[sock])
    finally:
        server.should_exit = True
        sock.close()
        await publisher.aclose()
