"""FastAPI / Starlette integration: a lifespan that registers the service, a health route.

::

    from fastapi import FastAPI
    from msfw_redis import ServiceSDK
    from msfw_redis.contrib.asgi import HealthEndpoint, lifespan

    sdk = ServiceSDK(config="settings.toml")
    app = FastAPI(
        lifespan=lifespan(sdk, service_name="user-service", host="10.0.3.7", port=8000)
    )
    app.add_route("/health", HealthEndpoint(sdk))

:func:`lifespan` starts the SDK, registers the current service (heartbeats keep it
alive), and on shutdown deregisters it and closes the SDK. Neither needs Starlette to be
imported: the lifespan is a plain async context manager factory and the health endpoint
is a raw ASGI app, so both work with any ASGI framework that takes them.
"""

from __future__ import annotations

import contextlib
import json
import logging
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping

    from msfw_redis._sdk.sdk import ServiceSDK

__all__ = ["HealthEndpoint", "lifespan"]

logger = logging.getLogger("msfw_redis.contrib.asgi")


def lifespan(
    sdk: ServiceSDK,
    *,
    service_name: str,
    host: str,
    port: int,
    version: str | None = None,
    health_check_path: str | None = "/health",
    metadata: dict[str, Any] | None = None,
) -> Callable[[Any], contextlib.AbstractAsyncContextManager[None]]:
    """A lifespan for ``FastAPI(lifespan=...)`` or ``Starlette(lifespan=...)``.

    On start-up it starts ``sdk`` and registers this process as an instance of
    ``service_name`` at ``host:port`` (``health_check_path`` is what the fleet probes);
    heartbeats run until shutdown. On shutdown it deregisters the instance at once and
    closes the SDK, so other replicas stop routing to it before the server stops.
    Arguments are as for :meth:`ServiceSDK.register_current_service`.
    """

    @contextlib.asynccontextmanager
    async def run(app: Any) -> AsyncIterator[None]:
        await sdk.start()
        instance = await sdk.register_current_service(
            service_name,
            version=version,
            host=host,
            port=port,
            health_check_path=health_check_path,
            metadata=metadata,
        )
        try:
            yield
        finally:
            try:
                await sdk.deregister_service(service_name, instance.instance_id)
            finally:
                await sdk.close()

    return run


class HealthEndpoint:
    """A raw ASGI app answering the fleet's health probes.

    ``200 {"status": "ok"}`` while ``sdk`` is started and not closed, else
    ``503 {"status": "unavailable"}``. Mount it with ``app.add_route("/health",
    HealthEndpoint(sdk))`` (Starlette and FastAPI treat a callable instance as an ASGI
    app). ``check`` is an optional ``async def check() -> bool`` of your own (a database
    ping, say); False or an exception answers 503.
    """

    def __init__(
        self, sdk: ServiceSDK, *, check: Callable[[], Awaitable[bool]] | None = None
    ) -> None:
        self.sdk = sdk
        self.check = check

    async def healthy(self) -> bool:
        """Whether the endpoint answers 200 now."""
        if not self.sdk.started or self.sdk.closed:
            return False
        if self.check is None:
            return True
        try:
            return bool(await self.check())
        except Exception:
            logger.warning("health check of the application raised", exc_info=True)
            return False

    async def __call__(
        self,
        scope: MutableMapping[str, Any],
        receive: Callable[[], Awaitable[MutableMapping[str, Any]]],
        send: Callable[[MutableMapping[str, Any]], Awaitable[None]],
    ) -> None:
        if scope["type"] != "http":
            raise RuntimeError(f"HealthEndpoint handles HTTP only, got {scope['type']!r}")
        ok = await self.healthy()
        body = json.dumps({"status": "ok" if ok else "unavailable"}).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 200 if ok else 503,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"cache-control", b"no-store"),
                ],
            }
        )
        if scope.get("method") == "HEAD":
            body = b""
        await send({"type": "http.response.body", "body": body})
