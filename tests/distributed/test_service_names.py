"""Two OS processes spelling one service two ways share one breaker."""

from __future__ import annotations

import uuid

import pytest

from msfw_redis.testing import ScriptedService, Step, run_in_processes
from tests.distributed import _names_workers as w

pytestmark = pytest.mark.real_redis


def test_underscore_and_hyphen_share_one_breaker(real_redis_url: str) -> None:
    """A process using order_service trips the breaker that order-service's process obeys."""
    prefix = f"n{uuid.uuid4().hex[:10]}"
    with ScriptedService() as svc:
        svc.script("/fail", Step(503))
        [statuses] = run_in_processes(
            w.trip, [(real_redis_url, prefix, "order_service", svc.port)], timeout=120
        )
        assert statuses == [503, 503, 503]
        [was_refused] = run_in_processes(
            w.refused, [(real_redis_url, prefix, "order-service", svc.port)], timeout=120
        )
        assert was_refused is True
        assert svc.hits("/fail") == 3
