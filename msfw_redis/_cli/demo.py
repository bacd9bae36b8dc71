"""``msfw-redis demo``: a fleet of replicas on one shared store, failing and recovering.

The parent process owns everything and cleans everything up:

1. **The store.** By default fakeredis's TCP server on a free loopback port, in a
   thread of this process (nothing to install), or the ``--redis-url`` given.
2. **order-service** (``_demo_origin``): two instances on loopback, ``order-1`` and
   ``order-2``, registered in the shared registry. ``order-2`` has a short heartbeat
   lease and crashes when the failing phase starts.
3. **N replica processes** (``_demo_replica``) calling it through the SDK, each
   reporting its counters over a pipe.
4. **The phases** of :class:`~msfw_redis._demo_plan.DemoPlan`, a live view, and a
   summary of the guarantees as measured (``_demo_report``).

Ctrl-C (or SIGTERM) ends the run early: the replicas are told to stop, waited for,
then terminated and killed if they linger; the summary covers what was measured.
Replicas run in their own session, so a terminal's Ctrl-C reaches only the parent, and
they stop by themselves when their stdin closes, so they never outlive it.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import signal
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, TextIO

import msfw_redis
from msfw_redis._cli.demo_origin import DemoOrigin
from msfw_redis._cli.demo_plan import DEAD_INSTANCE, LIVE_INSTANCE, SERVICE, DemoPlan, Phase
from msfw_redis._cli.demo_report import DemoState, evaluate, summary_json
from msfw_redis._cli.demo_view import (
    LiveScreen,
    phase_line,
    progress_line,
    render_summary,
    render_view,
)
from msfw_redis._cli.output import Style, print_json, redact_url
from msfw_redis._exceptions import StoreError
from msfw_redis._registry.registry import ServiceRegistry
from msfw_redis._sdk.sdk import ServiceSDK
from msfw_redis._shutdown import logged

if TYPE_CHECKING:
    from msfw_redis._breaker.breaker import DistributedBreaker
    from msfw_redis._breaker.views import TransitionEvent

__all__ = ["DemoError", "DemoOptions", "run_demo"]

logger = logging.getLogger("msfw_redis.demo")

#: Seconds between two refreshes of the live view (and of the parent's Redis reads).
_TICK = 0.5
#: Seconds between two progress lines when stdout is not a terminal.
_PROGRESS_EVERY = 1.0
#: How long replicas may take to start (spawn, import, connect, warm up).
_READY_TIMEOUT = 60.0
#: After ``stop``: seconds to exit by themselves, then after SIGTERM, before SIGKILL.
_STOP_GRACE = 8.0
_TERM_GRACE = 3.0
#: Longest line a replica may send (a stats line is well under 1 KiB).
_LINE_LIMIT = 1 << 20
_PACKAGE_ROOT = str(Path(msfw_redis.__file__).resolve().parent.parent)


class DemoError(Exception):
    """The demo could not run; ``exit_code`` 2 means the store was unreachable."""

    def __init__(self, message: str, *, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


@dataclass(frozen=True, slots=True)
class DemoOptions:
    """The command line's choices (``redis_url`` None: the embedded store)."""

    seconds: float
    replicas: int
    redis_url: str | None
    prefix: str
    json: bool = False
    dashboard: bool = False
    dashboard_port: int = 8050


class _EmbeddedStore:
    """fakeredis's TCP server on a free loopback port, served from a thread."""

    def __init__(self) -> None:
        import fakeredis

        self._server = fakeredis.TcpFakeServer(("127.0.0.1", 0))
        self.url = f"redis://127.0.0.1:{self._server.server_address[1]}/0"
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="msfw-demo-store", daemon=True
        )
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


@dataclass(slots=True)
class _Replica:
    index: int
    proc: asyncio.subprocess.Process
    stderr: IO[bytes]
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    reader: asyncio.Task[None] | None = None
    error: str | None = None

    def stderr_tail(self) -> str:
        with contextlib.suppress(OSError, ValueError):
            self.stderr.seek(0)
            lines = self.stderr.read().decode("utf-8", "replace").strip().splitlines()
            if lines:
                return lines[-1]
        return ""


class _Demo:
    def __init__(self, options: DemoOptions, plan: DemoPlan, label: str, out: TextIO) -> None:
        self.options = options
        self.plan = plan
        self.state = DemoState(plan=self.plan, store_label=label)
        self.out = out
        self.style = Style(out)
        self.live = not options.json and out.isatty()
        self.screen: LiveScreen | None = None
        self.interrupt = asyncio.Event()
        self.replicas: list[_Replica] = []
        self.sdk: ServiceSDK | None = None
        self.breaker: DistributedBreaker | None = None
        self.dead_registry: ServiceRegistry | None = None
        self.origin: DemoOrigin | None = None
        self._tasks: set[asyncio.Task[Any]] = set()

    # -- set-up ----------------------------------------------------------------------

    async def setup(self) -> None:
        plan = self.plan
        sdk = self.sdk = ServiceSDK(sdk_config=plan.sdk_config(parent=True))
        try:
            await sdk._store.start()
        except StoreError as exc:
            raise DemoError(
                f"cannot reach the store at {self.state.store_label}: {exc}", exit_code=2
            ) from None
        if not self.options.json:
            self._print(f"msfw-redis demo: starting on {self.state.store_label} ...")
        await sdk.start()
        await self._refuse_a_real_fleet(sdk)
        breaker = self.breaker = sdk._hub.get(SERVICE, None, plan.breaker_config())
        sdk.on_circuit_state_change(self._on_transition)
        # A fresh start, whatever earlier runs left on this store: breaker, cache.
        reset = await breaker.control("reset")
        self.state.transitions.reset_gen = reset.generation
        await sdk._cache.clear_service(SERVICE)
        self.origin = DemoOrigin(self._phase, self._breaker_state, catalog_delay=plan.catalog_delay)
        self.state.origin = self.origin.stats
        await self.origin.start([LIVE_INSTANCE, DEAD_INSTANCE])
        await sdk.register_current_service(
            SERVICE, host="127.0.0.1", port=self.origin.port(LIVE_INSTANCE),
            instance_id=LIVE_INSTANCE, health_check_path="/health", ttl=30.0,
        )  # fmt: skip
        # The instance that will die registers through a registry of its own, so that
        # its heartbeats can stop while the rest of this process carries on.
        self.dead_registry = ServiceRegistry(sdk._store, None, default_ttl=plan.dead_ttl)
        await self.dead_registry.start()
        await self.dead_registry.register(
            SERVICE, host="127.0.0.1", port=self.origin.port(DEAD_INSTANCE),
            instance_id=DEAD_INSTANCE, health_check_path="/health", ttl=plan.dead_ttl,
        )  # fmt: skip

    async def _refuse_a_real_fleet(self, sdk: ServiceSDK) -> None:
        """The demo resets order-service's breaker and cache and registers instances of
        it: never do that to a real fleet that shares this store and prefix."""
        listing = await sdk._registry.list_service(SERVICE)
        foreign = sorted(
            inst.instance_id
            for inst in listing.instances or ()
            if inst.instance_id not in (LIVE_INSTANCE, DEAD_INSTANCE)
        )
        if foreign:
            raise DemoError(
                f"refusing to run: {SERVICE} already has instances ({', '.join(foreign)}) "
                f"under prefix {self.plan.prefix!r} at {self.state.store_label}; give the "
                "demo a key space of its own with --prefix",
                exit_code=2,
            )

    def _on_transition(self, event: TransitionEvent) -> None:
        if event.service == SERVICE and event.endpoint is None:
            self.state.transitions.add(event.generation, event.state)

    def _phase(self) -> Phase:
        if self.state.t0 is None:
            return "starting"
        return self.plan.phase_at(time.monotonic() - self.state.t0)

    async def _breaker_state(self) -> str:
        if self.breaker is None:
            return "closed"
        return (await self.breaker.refresh()).state

    # -- replicas --------------------------------------------------------------------

    async def spawn(self) -> None:
        env = dict(os.environ)
        # The replicas import this very package, wherever it was imported from.
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [_PACKAGE_ROOT, env.get("PYTHONPATH")]))
        for index in range(self.plan.replicas):
            # Kept open for the replica's lifetime (read if it fails), closed in teardown().
            stderr = tempfile.TemporaryFile()  # noqa: SIM115
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "msfw_redis._cli.demo_replica",
                str(index), self.plan.to_json(),
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=stderr,
                env=env, start_new_session=True, limit=_LINE_LIMIT,
            )  # fmt: skip
            replica = _Replica(index, proc, stderr)
            replica.reader = asyncio.create_task(self._read(replica))
            self.replicas.append(replica)
        waits = [asyncio.create_task(r.ready.wait()) for r in self.replicas]
        exits = [asyncio.create_task(r.proc.wait()) for r in self.replicas]
        stop = asyncio.create_task(self.interrupt.wait())
        try:
            deadline = time.monotonic() + _READY_TIMEOUT
            while not all(r.ready.is_set() for r in self.replicas) and not stop.done():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise DemoError(f"the replicas did not start within {_READY_TIMEOUT:g}s")
                pending = [t for t in (*waits, *exits, stop) if not t.done()]
                await asyncio.wait(pending, timeout=remaining, return_when="FIRST_COMPLETED")
                for r in self.replicas:
                    if r.proc.returncode is not None and not r.ready.is_set():
                        why = r.error or r.stderr_tail() or f"exit code {r.proc.returncode}"
                        raise DemoError(f"replica r{r.index + 1} failed to start: {why}")
        finally:
            for task in [*waits, *exits, stop]:
                task.cancel()

    async def _read(self, replica: _Replica) -> None:
        stream = replica.proc.stdout
        if stream is None:  # pragma: no cover - always piped
            return
        try:
            async for raw in stream:
                self._receive(replica, raw)
        except (ValueError, ConnectionError) as exc:  # a line over the limit, a reset pipe
            replica.error = f"its reports could not be read: {exc!r}"

    def _receive(self, replica: _Replica, raw: bytes) -> None:
        try:
            message = json.loads(raw)
        except ValueError:
            return  # not a report (a stray print); the protocol lines are JSON
        kind = message.get("type")
        if kind == "ready":
            replica.ready.set()
        elif kind in ("stats", "final"):
            self.state.absorb(replica.index, message)
            if kind == "final":
                self.state.finished.add(replica.index)
        elif kind == "error":
            replica.error = str(message.get("message"))

    async def _tell(self, replica: _Replica, line: str) -> None:
        stdin = replica.proc.stdin
        if stdin is None or replica.proc.returncode is not None:
            return
        with contextlib.suppress(ConnectionError, RuntimeError):
            stdin.write(line.encode())
            await stdin.drain()

    async def stop_replicas(self) -> None:
        """Ask every replica to stop, then terminate and kill the ones that linger."""
        for replica in self.replicas:
            await self._tell(replica, "stop\n")
            stdin = replica.proc.stdin
            if stdin is not None:
                with logged("demo close"):
                    stdin.close()
        running = [r.proc for r in self.replicas if r.proc.returncode is None]
        for grace, action in ((_STOP_GRACE, "terminate"), (_TERM_GRACE, "kill")):
            if running:
                await asyncio.wait([asyncio.create_task(p.wait()) for p in running], timeout=grace)
            running = [p for p in running if p.returncode is None]
            for proc in running:
                with contextlib.suppress(ProcessLookupError):
                    getattr(proc, action)()
        for proc in running:
            await proc.wait()
        for replica in self.replicas:
            if replica.reader is not None:
                with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError):
                    await asyncio.wait_for(replica.reader, 2.0)

    # -- the run ---------------------------------------------------------------------

    async def run(self) -> None:
        plan, state = self.plan, self.state
        t0 = time.monotonic() + 0.3
        for replica in self.replicas:
            await self._tell(replica, f"go {t0!r}\n")
        state.t0 = t0
        self._spawn_task(self._crash_at(t0 + plan.healthy_end))
        screen = self.screen = LiveScreen(self.out) if self.live else None
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.interrupt.wait(), max(0.0, t0 - time.monotonic()))
        last_progress, last_phase = -_PROGRESS_EVERY, ""
        while True:
            state.elapsed = time.monotonic() - t0
            if self.interrupt.is_set():
                state.interrupted = True
                break
            if state.elapsed >= plan.seconds or len(state.finished) == plan.replicas:
                break
            await self.poll()
            if screen is not None:
                screen.draw(render_view(state, self.style))
            elif not self.options.json:
                if state.phase != last_phase:
                    last_phase = state.phase
                    self._print(phase_line(state, self.style))
                if state.elapsed - last_progress >= _PROGRESS_EVERY:
                    last_progress = state.elapsed
                    self._print(progress_line(state))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.interrupt.wait(), _TICK)
        state.elapsed = min(time.monotonic() - t0, plan.seconds)

    async def _crash_at(self, when: float) -> None:
        await asyncio.sleep(max(0.0, when - time.monotonic()))
        if self.origin is None or self.dead_registry is None or self.state.t0 is None:
            return
        await self.origin.crash(DEAD_INSTANCE)
        await self.dead_registry.aclose(deregister=False)
        self.state.crashed_at = time.monotonic() - self.state.t0

    async def poll(self) -> None:
        """Read the fleet's breaker, registry and health from Redis."""
        sdk, state = self.sdk, self.state
        if sdk is None or self.breaker is None:
            return
        try:
            state.fleet = await self.breaker.refresh()
            listing = await sdk._registry.list_service(SERVICE)
            if listing.instances is not None:
                state.instances = list(listing.instances)
            state.health = await sdk._health.state(SERVICE)
            state.server_now = sdk._store.clock.now_ms() / 1000.0
        except StoreError as exc:
            logger.info("demo could not read the store: %s", exc)
            return
        ids = {i.instance_id for i in state.instances}
        if state.crashed_at is not None and state.evicted_at is None and DEAD_INSTANCE not in ids:
            state.evicted_at = time.monotonic() - (state.t0 or 0.0)

    async def finish(self) -> int:
        """Stop the replicas, read the last state, print the summary; the exit code."""
        await self.stop_replicas()
        await self.poll()
        failures = [
            f"replica r{r.index + 1} failed: {r.error or r.stderr_tail() or 'no report'}"
            for r in self.replicas
            if r.error is not None
            or (r.index not in self.state.finished and not self.state.interrupted)
        ]
        guarantees = evaluate(self.state)
        summary = summary_json(self.state, guarantees)
        if self.options.json:
            print_json(summary, self.out)
        else:
            lines = [
                *render_view(self.state, self.style),
                *render_summary(self.state, guarantees, self.style),
            ]
            if self.screen is not None:
                self.screen.draw(lines)
            else:
                self._print("")
                self._print("\n".join(lines))
        for line in failures:
            sys.stderr.write(f"msfw-redis demo: {line}\n")
        if failures:
            return 1
        return 0 if summary["ok"] or self.state.interrupted else 1

    async def teardown(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self.replicas:
            await self.stop_replicas_quietly()
            for replica in self.replicas:
                replica.stderr.close()
        if self.dead_registry is not None:
            with logged("demo close"):
                await self.dead_registry.aclose()
        if self.sdk is not None:
            with logged("demo close"):
                async with asyncio.timeout(10.0):
                    await self.sdk.close()
        if self.origin is not None:
            await self.origin.aclose()

    async def stop_replicas_quietly(self) -> None:
        if any(r.proc.returncode is None for r in self.replicas):
            with logged("demo close"):
                await self.stop_replicas()

    def _spawn_task(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _print(self, line: str) -> None:
        self.out.write(line + "\n")
        self.out.flush()


async def _main(options: DemoOptions, plan: DemoPlan, label: str, out: TextIO) -> int:
    demo = _Demo(options, plan, label, out)
    loop = asyncio.get_running_loop()
    signals = (signal.SIGINT, signal.SIGTERM)
    for signum in signals:
        with contextlib.suppress(NotImplementedError):  # no such handlers on Windows
            loop.add_signal_handler(signum, demo.interrupt.set)
    try:
        await demo.setup()
        async with contextlib.AsyncExitStack() as stack:
            if options.dashboard:
                from msfw_redis._cli.demo_dashboard import demo_dashboard

                await stack.enter_async_context(
                    demo_dashboard(
                        plan.redis_url,
                        plan.prefix,
                        "127.0.0.1",
                        options.dashboard_port,
                        sys.stderr if options.json else out,  # --json keeps stdout pure JSON
                    )
                )
            await demo.spawn()
            if not demo.interrupt.is_set():
                await demo.run()
            else:
                demo.state.interrupted = True
            return await demo.finish()
    finally:
        try:
            await demo.teardown()
        finally:
            for signum in signals:
                with contextlib.suppress(NotImplementedError):
                    loop.remove_signal_handler(signum)


def run_demo(options: DemoOptions, out: TextIO | None = None) -> int:
    """Run the demo; returns the exit code (0 when every measured guarantee held).

    Raises :class:`DemoError` when it cannot run (exit code 2 for an unreachable store).
    """
    out = out or sys.stdout
    url = options.redis_url
    # memory:// lives inside one process; its shareable twin is fakeredis's TCP server.
    use_embedded = url is None or url.startswith("memory://")
    try:
        plan = DemoPlan(
            seconds=options.seconds,
            replicas=options.replicas,
            redis_url="redis://127.0.0.1:0/0" if use_embedded or url is None else url,
            prefix=options.prefix,
        )
        plan.sdk_config(parent=True)  # an invalid prefix fails here, before anything starts
    except ValueError as exc:
        raise DemoError(str(exc), exit_code=2) from None
    embedded: _EmbeddedStore | None = None
    if use_embedded:
        embedded = _EmbeddedStore()
        plan = dataclasses.replace(plan, redis_url=embedded.url)
        label = f"embedded fakeredis at {embedded.url}"
    else:
        label = redact_url(plan.redis_url)
    try:
        return asyncio.run(_main(options, plan, label, out))
    finally:
        if embedded is not None:
            embedded.close()
