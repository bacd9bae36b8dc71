"""One replica process of ``msfw-redis demo``: calls ``order-service`` through the SDK.

Run by the demo as ``python -m msfw_redis._cli.demo_replica <index> <plan-json>``. The
protocol with the parent is line-based JSON:

* stdout, replica -> parent: ``{"type": "ready"}`` once the SDK is connected and warm;
  ``{"type": "stats", ...}`` about four times a second; ``{"type": "final", ...}`` after
  the SDK closed; ``{"type": "error", "message": ...}`` if it failed. Counters are
  totals; ``cold_keys_new`` and ``seen_new`` (breaker transitions) are what is new
  since the previous line.
* stdin, parent -> replica: ``go <t0>`` (the ``time.monotonic()`` value at which the
  phases start; that clock is system-wide), then ``stop``. End of input also means
  stop, so a replica never outlives its parent.

The counters are demo-local and travel over this pipe, never through Redis: shared
state changes only through the library's Lua scripts.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import signal
import sys
import threading
import time
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from msfw_redis._cli.demo_plan import SERVICE, DemoPlan
from msfw_redis._exceptions import CircuitOpenError
from msfw_redis._sdk.sdk import ServiceSDK
from msfw_redis._shutdown import logged

if TYPE_CHECKING:
    from msfw_redis._breaker.views import TransitionEvent
    from msfw_redis._models import ServiceResult

__all__ = ["ReplicaStats", "main"]

#: Seconds between two stats lines.
_REPORT_INTERVAL = 0.25
#: A replica whose parent never says ``go`` and ``stop`` gives up this long after the
#: planned run time (start-up of every replica included).
_ORPHAN_GRACE = 90.0


@dataclass(slots=True)
class ReplicaStats:
    """What one replica counted (every call, ``/orders`` and catalogue alike).

    Attributes:
        calls: calls made; each ends ``ok``, ``failed`` or ``rejected`` (by the breaker,
            without reaching the service).
        failed_before_reject: failures this replica saw before its first rejection.
        cache_requests: catalogue calls (all cacheable); ``cache_served`` of them were
            answered from the shared cache; ``cache_origin`` times this replica filled
            an entry from the service.
        breaker_state, breaker_gen: this replica's mirror of the fleet's breaker.
    """

    replica: int
    pid: int
    calls: int = 0
    ok: int = 0
    failed: int = 0
    rejected: int = 0
    failed_before_reject: int = 0
    cache_requests: int = 0
    cache_served: int = 0
    cache_origin: int = 0
    breaker_state: str = "closed"
    breaker_gen: int = 0

    def count(self, result: ServiceResult) -> None:
        self.calls += 1
        if result.success:
            self.ok += 1
        elif isinstance(result.exception, CircuitOpenError):
            if not self.rejected:
                self.failed_before_reject = self.failed
            self.rejected += 1
        else:
            self.failed += 1


class _Replica:
    def __init__(self, index: int, plan: DemoPlan) -> None:
        self.plan = plan
        self.stats = ReplicaStats(replica=index, pid=os.getpid())
        self.sdk = ServiceSDK(sdk_config=plan.sdk_config(parent=False))
        self.breaker = self.sdk._hub.get(SERVICE, None, plan.breaker_config())
        self.sdk.on_circuit_state_change(self._on_transition)
        self.t0 = 0.0
        self.stop = asyncio.Event()
        self.rng = random.Random(index)
        self.warm: list[str] = []
        # Sent to the parent as increments, so that a stats line stays short.
        self.cold_keys: list[str] = []
        self.seen: list[tuple[int, str]] = []

    def _on_transition(self, event: TransitionEvent) -> None:
        if event.service == SERVICE and event.endpoint is None:
            self.seen.append((event.generation, event.state))

    def elapsed(self) -> float:
        return time.monotonic() - self.t0

    def emit(self, kind: str, **extra: Any) -> None:
        view = self.breaker.state()
        self.stats.breaker_state, self.stats.breaker_gen = view.state, view.generation
        metrics = self.sdk._cache.metrics()
        self.stats.cache_origin = metrics["misses"]
        news = {"cold_keys_new": self.cold_keys, "seen_new": self.seen}
        self.cold_keys, self.seen = [], []
        line = json.dumps(
            {"type": kind, **asdict(self.stats), **news, **extra}, separators=(",", ":")
        )
        sys.stdout.write(line + "\n")
        sys.stdout.flush()

    async def call(self, path: str, *, cached: bool) -> ServiceResult:
        options: dict[str, Any] = {"use_cache": cached}
        if cached:
            options["cache_ttl"] = self.plan.cache_ttl
        result = await self.sdk.call_service(SERVICE, path, **options)
        self.stats.count(result)
        if cached:
            self.stats.cache_requests += 1
            self.stats.cache_served += 1 if result.success and result.from_cache else 0
        return result

    async def warm_up(self) -> None:
        """Connect, discover the service and load the breaker mirror before ``go``."""
        await self.sdk.start()
        await self.sdk.discover_services(SERVICE)
        await self.sdk.call_service(SERVICE, "/health", use_cache=False)

    async def orders_caller(self) -> None:
        while not self.stop.is_set() and self.elapsed() < self.plan.seconds:
            await self.call("/orders", cached=False)
            await self._pause(self.plan.orders_interval)

    async def catalog_caller(self) -> None:
        """A cold key per wave, asked for by every replica at the same instant; warm
        keys in between (served by the cache, even while the service fails)."""
        plan = self.plan
        wave = 0
        while not self.stop.is_set() and self.elapsed() < plan.seconds:
            due = wave * plan.wave
            now = self.elapsed()
            if now >= due:
                wave += 1
                if now - due < plan.wave / 2 and plan.new_key_allowed(
                    now, self.breaker.state().state == "closed"
                ):
                    await self._stampede(f"/catalog/sku-{wave - 1}")
                continue
            if self.warm:
                await self.call(self.rng.choice(self.warm), cached=True)
            await self._pause(min(0.1, due - self.elapsed()))

    async def _stampede(self, path: str) -> None:
        self.cold_keys.append(path)
        results = await asyncio.gather(
            *(self.call(path, cached=True) for _ in range(self.plan.cache_fanout))
        )
        if any(r.success for r in results):
            self.warm.append(path)

    async def _pause(self, seconds: float) -> None:
        if seconds > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stop.wait(), seconds)

    async def reporter(self) -> None:
        while not self.stop.is_set():
            self.emit("stats")
            await self._pause(_REPORT_INTERVAL)

    async def run(self, go: asyncio.Future[float]) -> None:
        try:
            await self.warm_up()
            self.emit("ready")
            self.t0 = await go
            await self._pause(self.t0 - time.monotonic())
            reporter = asyncio.create_task(self.reporter())
            callers = [
                asyncio.create_task(self.orders_caller()) for _ in range(self.plan.orders_tasks)
            ]
            callers.append(asyncio.create_task(self.catalog_caller()))
            await asyncio.gather(*callers)
            self.stop.set()
            await reporter
        finally:
            with logged("demo_replica close"):
                async with asyncio.timeout(5.0):
                    await self.sdk.close()
        self.emit("final")


def _read_commands(
    loop: asyncio.AbstractEventLoop, go: asyncio.Future[float], stop: asyncio.Event
) -> None:
    """Thread: parse ``go``/``stop`` lines from the parent; EOF means stop."""

    def start(t0: float) -> None:
        if not go.done():
            go.set_result(t0)

    def halt() -> None:
        stop.set()
        if not go.done():
            go.set_result(time.monotonic())

    for line in sys.stdin:
        parts = line.split()
        if parts[:1] == ["go"] and len(parts) == 2:
            loop.call_soon_threadsafe(start, float(parts[1]))
        elif parts[:1] == ["stop"]:
            break
    loop.call_soon_threadsafe(halt)


async def _main(index: int, plan: DemoPlan) -> None:
    loop = asyncio.get_running_loop()
    go: asyncio.Future[float] = loop.create_future()
    replica = _Replica(index, plan)
    threading.Thread(
        target=_read_commands, args=(loop, go, replica.stop), daemon=True, name="demo-stdin"
    ).start()
    deadline = plan.seconds + _ORPHAN_GRACE
    try:
        async with asyncio.timeout(deadline):
            await replica.run(go)
    except Exception as exc:
        line = json.dumps({"type": "error", "replica": index, "message": repr(exc)})
        sys.stdout.write(line + "\n")
        sys.stdout.flush()
        raise


def main(argv: list[str] | None = None) -> int:
    """Entry point of a replica process (see the module docstring)."""
    args = sys.argv[1:] if argv is None else argv
    index, plan = int(args[0]), DemoPlan.from_json(args[1])
    # The parent owns Ctrl-C: it stops replicas in order, so they ignore SIGINT.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        asyncio.run(_main(index, plan))
    except Exception:
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
