"""Worker functions for the multi-process pipeline tests (module level, so spawn can import them).

Each worker is one replica with its own ServiceSDK on the shared server. Origins are
in-process ``httpx.MockTransport`` handlers, so what a worker receives tells which
process's origin produced it.
"""

from __future__ import annotations

from typing import Any

import httpx

from msfw_redis import (
    ResilientTransport,
    ServiceInterface,
    ServiceSDK,
    ServiceSDKConfig,
    cached_service_call,
    service_call,
    service_interface,
)

SECRET = "pipeline-test-cache-secret-0123456789"


def _sdk(url: str, prefix: str, services: dict[str, Any], **extra: Any) -> ServiceSDK:
    config = ServiceSDKConfig(
        redis_url=url,
        key_prefix=prefix,
        redis_op_timeout=2.0,
        service_discovery_enabled=False,
        **extra,
    )
    return ServiceSDK(config={"services": services}, sdk_config=config)


@service_interface("profile-service")
class Profiles(ServiceInterface):
    """The profile of whoever calls (the origin answers per credential)."""

    @cached_service_call(ttl=60)
    @service_call("profile-service", "GET", "/me")
    async def me(self) -> dict[str, Any]: ...


async def profile_worker(url: str, prefix: str, token: str, secret: str | None) -> dict[str, Any]:
    """Call the cached ``/me`` once with ``token`` set by middleware; report body and origin calls."""
    origin_calls: list[str] = []

    def origin(request: httpx.Request) -> httpx.Response:
        who = request.headers.get("authorization", "")
        origin_calls.append(who)
        return httpx.Response(200, json={"user": who.removeprefix("Bearer ")})

    extra: dict[str, Any] = {"cache_key_secret": secret} if secret else {}
    config = ServiceSDKConfig(
        redis_url=url,
        key_prefix=prefix,
        redis_op_timeout=2.0,
        service_discovery_enabled=False,
        **extra,
    )
    async with httpx.AsyncClient(transport=httpx.MockTransport(origin)) as http:
        sdk = ServiceSDK(
            config={"services": {"profile-service": {"host": "profiles", "port": 80}}},
            sdk_config=config,
            http_client=http,
        )
        async with sdk:

            @sdk.middleware
            async def credentials(request: httpx.Request, call_next: Any) -> httpx.Response:
                request.headers["authorization"] = f"Bearer {token}"
                response: httpx.Response = await call_next(request)
                return response

            body = await Profiles(sdk=sdk).me()
    return {"body": body, "origin_calls": len(origin_calls)}


async def sdk_call_worker(
    url: str, prefix: str, service: str, host: str, port: int
) -> dict[str, Any]:
    """One ``call_service(service, "/orders")`` through an SDK of this process."""
    sdk = _sdk(url, prefix, {service: {"host": host, "port": port, "cache_enabled": True}})
    async with sdk:
        result = await sdk.call_service(service, "/orders")
    return {
        "success": result.success,
        "error_type": type(result.exception).__name__ if result.exception else None,
        "from_cache": result.from_cache,
        "data": result.data,
    }


async def transport_get_worker(url: str, prefix: str, service: str) -> dict[str, Any]:
    """A GET through ResilientTransport (cache enabled for ``service``), origin in-process."""
    calls: list[str] = []

    def origin(request: httpx.Request) -> httpx.Response:
        calls.append(str(request.url))
        return httpx.Response(200, json={"orders": [1, 2]})

    sdk = _sdk(url, prefix, {service: {"host": "orders", "port": 8080, "cache_enabled": True}})
    async with sdk:
        transport = ResilientTransport(
            sdk=sdk, service=service, transport=httpx.MockTransport(origin)
        )
        async with httpx.AsyncClient(transport=transport, base_url="http://orders:8080") as c:
            response = await c.get("/orders")
    return {"status": response.status_code, "json": response.json(), "origin_calls": len(calls)}
