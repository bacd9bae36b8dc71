"""``ServiceClient``: calls to one service through the pipeline.

The client validates its service name once, when it is made, and hands each call to the
:class:`~msfw_redis._pipeline.pipeline.Pipeline` it was built with (the order of the
steps is written there). It holds no state of its own beyond its settings.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from msfw_redis._exceptions import ServiceClientError
from msfw_redis._pipeline.request import error_for_response
from msfw_redis._store.keys import canonical_service_name

if TYPE_CHECKING:
    import httpx

    from msfw_redis._breaker.views import CircuitState
    from msfw_redis._config import CircuitBreakerConfig
    from msfw_redis._models import HTTPMethod
    from msfw_redis._pipeline.pipeline import CallOutcome, Pipeline

__all__ = ["ServiceClient"]


class ServiceClient:
    """Calls to one service through the resilience pipeline.

    Get one from :meth:`ServiceSDK.get_client` or ``async with sdk.service_client(name)``.
    The verbs take httpx-style arguments and return an ``httpx.Response`` for statuses
    below 400; they raise :class:`ServiceClientError` (``.status_code`` set) for the
    rest, :class:`ServiceTimeoutError` on timeouts and :class:`CircuitOpenError` when
    the breaker refuses.
    """

    __slots__ = ("_pipeline", "circuit_config", "service_name", "version")

    def __init__(
        self,
        pipeline: Pipeline,
        service_name: str,
        *,
        circuit_config: CircuitBreakerConfig | None = None,
        version: str | None = None,
    ) -> None:
        self._pipeline = pipeline
        self.service_name = canonical_service_name(service_name)
        self.circuit_config = circuit_config
        self.version = version

    # -- verbs -------------------------------------------------------------------------------

    async def get(self, path: str, **kwargs: Any) -> httpx.Response:
        """GET ``path``. Keyword arguments as for :meth:`request`."""
        return await self.request("GET", path, **kwargs)

    async def post(self, path: str, **kwargs: Any) -> httpx.Response:
        """POST ``path`` (not retried unless safe; see the README)."""
        return await self.request("POST", path, **kwargs)

    async def put(self, path: str, **kwargs: Any) -> httpx.Response:
        """PUT ``path``."""
        return await self.request("PUT", path, **kwargs)

    async def patch(self, path: str, **kwargs: Any) -> httpx.Response:
        """PATCH ``path`` (not retried unless safe)."""
        return await self.request("PATCH", path, **kwargs)

    async def delete(self, path: str, **kwargs: Any) -> httpx.Response:
        """DELETE ``path``."""
        return await self.request("DELETE", path, **kwargs)

    async def head(self, path: str, **kwargs: Any) -> httpx.Response:
        """HEAD ``path``."""
        return await self.request("HEAD", path, **kwargs)

    async def options(self, path: str, **kwargs: Any) -> httpx.Response:
        """OPTIONS ``path``."""
        return await self.request("OPTIONS", path, **kwargs)

    async def request(self, method: str | HTTPMethod, path: str, **kwargs: Any) -> httpx.Response:
        """Make a call and return its response, raising for failures (see class docs).

        Keyword arguments: ``params``, ``json``, ``content``, ``headers``, ``timeout``
        (seconds per attempt), ``retry_attempts``, ``deadline`` (seconds for the whole
        call), ``retry_non_idempotent``, ``endpoint_template`` (breaker/cache name of
        the route), ``use_cache``, ``force_refresh`` and ``cache_ttl``.
        """
        outcome = await self.execute(method, path, **kwargs)
        if outcome.exception is not None:
            raise outcome.exception
        if outcome.response is None:  # pragma: no cover - execute always sets one
            raise ServiceClientError("no response", service_name=self.service_name, endpoint=path)
        if outcome.response.status_code >= 400:
            err = error_for_response(outcome.response, self.service_name, outcome.endpoint)
            err.attempts = outcome.attempts
            raise err
        return outcome.response

    async def execute(self, method: str | HTTPMethod, path: str, **kwargs: Any) -> CallOutcome:
        """Run the pipeline; never raises for HTTP, network or breaker failures.

        Takes the keyword arguments of :meth:`request`, plus ``retry_policy`` (replaces
        the resolved attempts and back-off; the deadline still applies) and
        ``breaker_endpoint`` (names the breaker this call uses). Invalid arguments
        raise :class:`InvalidRequestError` before any I/O.
        """
        return await self._pipeline.execute(
            self.service_name,
            method,
            path,
            circuit_config=self.circuit_config,
            version=self.version,
            **kwargs,
        )

    # -- state -----------------------------------------------------------------------------------

    def get_circuit_state(self) -> dict[str, CircuitState]:
        """``{endpoint: CircuitState}`` for this service's breakers, from the local mirror.

        A service-wide breaker is listed under the service's name.
        """
        hub = self._pipeline.hub
        states: dict[str, CircuitState] = {}
        for breaker in hub.breakers():
            if breaker.service == self.service_name:
                states[breaker.endpoint or self.service_name] = breaker.state()
        if not states:
            config = self._pipeline.policies.base(self.service_name, self.circuit_config)
            states[self.service_name] = hub.get(
                self.service_name, None, config.breaker_config
            ).state()
        return states

    async def aclose(self) -> None:
        """Flush this service's batched breaker reports. The SDK owns the connection pool."""
        for breaker in self._pipeline.hub.breakers():
            if breaker.service == self.service_name:
                await breaker.flush()

    async def __aenter__(self) -> ServiceClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
