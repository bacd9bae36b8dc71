"""One health probe: of a registered instance, or of a statically configured address.

An instance with a ``health_check_path`` passes when ``GET <url><path>`` answers below
400; one without passes when a TCP connect succeeds. A statically configured service is
probed with ``GET <base_url>/health``. Every probe is bounded by its ``timeout`` and
counted in the monitor's :class:`~msfw_redis._registry.health_state.HealthStats`; a
failed one is logged at DEBUG only, since the state machine in Redis decides what a
failure means.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING

import httpx

if TYPE_CHECKING:
    from msfw_redis._registry.health_state import HealthStats
    from msfw_redis._registry.instance import ServiceInstance

__all__ = ["STATIC_HEALTH_PATH", "probe_instance", "probe_static"]

logger = logging.getLogger("msfw_redis.health")

#: Path probed on a statically configured service's settings address.
STATIC_HEALTH_PATH = "/health"


def _client(http: httpx.AsyncClient | None) -> httpx.AsyncClient:
    if http is None:
        raise RuntimeError("HealthMonitor.start() was not called")
    return http


async def probe_instance(
    http: httpx.AsyncClient | None, inst: ServiceInstance, timeout: float, stats: HealthStats
) -> bool:
    """Whether ``inst`` passes one probe within ``timeout`` seconds."""
    stats.probes += 1
    try:
        if inst.health_check_path is None:
            async with asyncio.timeout(timeout):
                _, writer = await asyncio.open_connection(inst.host, inst.port)
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
            return True
        response = await _client(http).get(inst.url + inst.health_check_path, timeout=timeout)
    except (httpx.HTTPError, OSError, TimeoutError) as exc:
        stats.probe_failures += 1
        logger.debug("probe of %s/%s failed: %r", inst.name, inst.instance_id, exc)
        return False
    if response.status_code >= 400:
        stats.probe_failures += 1
        logger.debug(
            "probe of %s/%s answered %d", inst.name, inst.instance_id, response.status_code
        )
        return False
    return True


async def probe_static(
    http: httpx.AsyncClient | None, base_url: str, timeout: float, stats: HealthStats
) -> bool:
    """Whether ``GET <base_url>/health`` answers below 400 within ``timeout`` seconds."""
    stats.probes += 1
    client = _client(http)
    try:
        response = await client.get(base_url + STATIC_HEALTH_PATH, timeout=timeout)
    except (httpx.HTTPError, OSError, TimeoutError) as exc:
        stats.probe_failures += 1
        logger.debug("probe of %s failed: %r", base_url, exc)
        return False
    if response.status_code >= 400:
        stats.probe_failures += 1
        return False
    return True
