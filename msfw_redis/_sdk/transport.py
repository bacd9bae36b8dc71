"""``ResilientTransport``: the SDK's breaker, retries and shared cache for any httpx client.

It is the SDK's pipeline without middleware and without discovery, wrapped around an
inner transport: cache -> retry loop -> breaker admission -> attempt timeout -> send.
It sends to the URL it is given. The breaker and cache entries it uses are the SDK's for
that service name, so an ``httpx.AsyncClient`` using it and ``sdk.call_service`` (in
this process or any other replica) share one breaker and one cache.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import httpx

from msfw_redis._pipeline.steps import CALL_KEY
from msfw_redis._sdk.loop import LoopBinding
from msfw_redis._sdk.sdk import get_default_sdk
from msfw_redis._store.keys import canonical_service_name

if TYPE_CHECKING:
    from msfw_redis._sdk.sdk import ServiceSDK

__all__ = ["ResilientTransport"]

_MAX_HOST_NAMES = 1024  # bound on the per-host names remembered (service=None)


class ResilientTransport(httpx.AsyncBaseTransport):
    """An ``httpx.AsyncBaseTransport`` with the fleet breaker, retries and shared cache.

    Args:
        sdk: the SDK whose breakers, retry settings and cache are used (default: the
            default SDK).
        service: the service name the breaker and cache entries are scoped by; with
            ``None`` each request is scoped by its URL's ``host:port``.
        transport: the inner transport that sends (default ``httpx.AsyncHTTPTransport()``,
            closed with this one; a transport you pass is yours to close).

    Retried responses and errors follow the SDK's settings for ``service``. A refused
    call raises :class:`CircuitOpenError`; a timed-out attempt raises
    ``httpx.TimeoutException``.
    """

    def __init__(
        self,
        sdk: ServiceSDK | None = None,
        service: str | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._sdk = sdk if sdk is not None else get_default_sdk()
        self._service = canonical_service_name(service) if service is not None else None
        self._owns_inner = transport is None
        self._inner = transport if transport is not None else httpx.AsyncHTTPTransport()
        self._pipeline = self._sdk.pipeline
        self._chain = self._pipeline.transport(self._inner)
        # An inner transport we made holds connections of one event loop: closed as
        # that loop ends, and made anew on the next (a transport you pass stays yours).
        self._binding = LoopBinding(self._release_inner)
        self._host_names: dict[tuple[str, int | None], str] = {}

    def _service_for(self, url: httpx.URL) -> str:
        if self._service is not None:
            return self._service
        slot = (url.host, url.port)
        name = self._host_names.get(slot)
        if name is None:
            port = url.port if url.port is not None else (443 if url.scheme == "https" else 80)
            name = canonical_service_name(f"{url.host}:{port}")
            if len(self._host_names) < _MAX_HOST_NAMES:
                self._host_names[slot] = name
        return name

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Send ``request`` through the cache, retries and breaker of its service."""
        if self._owns_inner and not self._binding.current() and await self._binding.bind():
            self._inner = httpx.AsyncHTTPTransport()
            self._chain = self._pipeline.transport(self._inner)
        await self._pipeline.start()
        service = self._service_for(request.url)
        policy = self._pipeline.policies.base(service, None)
        request.extensions[CALL_KEY] = self._pipeline.context(service, request, policy)
        try:
            return await self._chain.handle_async_request(request)
        except TimeoutError as exc:
            # The attempt timeout fired (asyncio's): say it the way httpx users expect.
            raise httpx.TimeoutException(
                f"{request.method} {request.url} timed out", request=request
            ) from exc
        finally:
            request.extensions.pop(CALL_KEY, None)

    async def _release_inner(self) -> None:
        await self._inner.aclose()

    async def aclose(self) -> None:
        """Close the inner transport if this transport made it."""
        self._binding.disarm()
        if self._owns_inner:
            await self._inner.aclose()
