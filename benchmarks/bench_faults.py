"""Faults where Redis answers but misbehaves: refused writes, a starved loop, a password.

Each scenario starts its own ``redis-server`` (it demotes it or changes its ACL, so it
cannot share the suite's server) and makes ``CALLS`` failing calls through one breaker
with ``failure_threshold=3``:

* **readonly**: the server becomes a replica of a primary that does not exist
  (``REPLICAOF`` a free port), so every write replies READONLY; then ``REPLICAOF NO
  ONE``, and the time until the breaker has rejoined the shared state is measured, with
  the shared lifetime failure total (lost updates = local failures not in it).
* **noperm**: an ACL user with ``+@all -hset`` on ``~<prefix>:*``.
* **stall**: five 300 ms CPU stalls (``time.sleep`` on the loop) while an operation is
  in flight against a stand-in that never answers; the count of outages declared.
* **password**: captured log lines of a password-protected, unreachable store that
  contain the password.
"""

from __future__ import annotations

import asyncio
import logging
import time
from contextlib import suppress
from typing import Any

import redis

from benchmarks._common import Context, Result
from msfw_redis import CircuitBreakerConfig, CircuitOpenError
from msfw_redis._breaker.hub import BreakerHub
from msfw_redis._exceptions import StoreError
from msfw_redis._store.store import Store
from msfw_redis.testing import RedisServer, free_port

CALLS = 30
PREFIX = "benchfaults"
PASSWORD = "S3cr3t-Passw0rd"
CFG = CircuitBreakerConfig(failure_threshold=3, timeout=30.0, success_flush_interval=0.0)


async def _refused(kind: str) -> dict[str, Any]:
    with RedisServer() as server:
        admin = redis.Redis.from_url(server.url)
        url = server.url
        if kind == "noperm":
            admin.execute_command(
                "ACL", "SETUSER", "bench", "on", f">{PASSWORD}", f"~{PREFIX}:*", "&*",
                "+@all", "-hset",
            )  # fmt: skip
            url = f"redis://bench:{PASSWORD}@127.0.0.1:{server.port}/0"
        store = Store.from_url(url, op_timeout=0.5, key_prefix=PREFIX)
        await store.start()
        hub = BreakerHub(store, None)
        breaker = hub.get("orders", config=CFG)
        if kind == "readonly":
            await breaker.acquire()
            admin.execute_command("REPLICAOF", "127.0.0.1", str(free_port()))
        admitted = errors = 0
        for _ in range(CALLS):
            try:
                permit = await breaker.acquire()
            except CircuitOpenError:
                continue
            except StoreError:
                errors += 1
                continue
            admitted += 1
            await permit.failure()
        row: dict[str, Any] = {
            "fault": kind,
            "admitted": f"{admitted} of {CALLS}",
            "store errors to callers": errors,
            "local": breaker.state().local,
        }
        if kind == "readonly":
            admin.execute_command("REPLICAOF", "NO", "ONE")
            started = time.monotonic()
            while breaker.state().local and time.monotonic() - started < 30:
                await asyncio.sleep(0.01)
                with suppress(CircuitOpenError):
                    await breaker.acquire()
            row["rejoin s"] = round(time.monotonic() - started, 2)
            key = admin.keys(f"{PREFIX}:*breaker:state:*")[0]
            row["lost failures"] = admitted - int(admin.hget(key, "tf") or 0)
        await hub.aclose()
        await store.aclose()
        return row


class _Stalling:
    async def get(self, key: str) -> None:
        time.sleep(0.3)
        await asyncio.sleep(10)


async def _stall() -> dict[str, Any]:
    store = Store.from_client(_Stalling(), op_timeout=0.25)  # type: ignore[arg-type]
    for _ in range(5):
        with suppress(StoreError):
            await store.get("k")
    return {"fault": "stall 300 ms x5", "outages declared": store.stats.outages}


async def _password() -> dict[str, Any]:
    records: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record.getMessage())

    handler = Keep(logging.DEBUG)
    root = logging.getLogger("msfw_redis")
    root.addHandler(handler)
    old = root.level
    root.setLevel(logging.DEBUG)
    try:
        store = Store.from_url(f"redis://:{PASSWORD}@127.0.0.1:{free_port()}/0", op_timeout=0.1)
        texts = [repr(store)]
        for _ in range(3):
            try:
                await store.get("k")
            except StoreError as exc:
                texts.append(str(exc))
        await store.aclose()
    finally:
        root.removeHandler(handler)
        root.setLevel(old)
    texts += records
    return {"fault": "password in URL", "lines": len(texts),
            "with password": sum(PASSWORD in t for t in texts)}  # fmt: skip


async def run(ctx: Context) -> Result:
    result = Result(
        name="faults",
        title="Faults: refused writes, a starved loop, a password in the URL",
        columns=[
            "fault", "admitted", "store errors to callers", "local", "rejoin s",
            "lost failures", "outages declared", "lines", "with password",
        ],
    )  # fmt: skip
    for kind in ("readonly", "noperm"):
        ctx.progress(f"[faults] {kind}")
        result.add(**await _refused(kind))
    result.add(**await _stall())
    result.add(**await _password())
    result.notes.append(
        f"{CALLS} failing calls, failure_threshold=3; rejoin = REPLICAOF NO ONE until the "
        "breaker left local mode (bounded below by the 2 s refusal back-off)"
    )
    return result
