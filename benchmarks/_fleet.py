"""Spawn worker processes once and step them through many rounds in lock-step.

Spawning a Python process that imports the library and the peers costs about a second
of CPU on this machine, so multi-process benchmarks start their workers once and run
every subject and round inside them. Workers and this process meet at a shared barrier;
between two meetings this process can snapshot ``INFO commandstats`` or reset an
origin while the workers wait. Each worker stays bounded in time: the barrier waits
time out, and ``run_in_processes`` kills every worker at the overall deadline.
"""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import threading
from collections.abc import Callable, Sequence
from typing import Any

from msfw_redis.testing import ProcessFailed, run_in_processes

#: seconds any one barrier wait may take before the run is declared broken
STEP_TIMEOUT = 120.0


async def step(barrier: Any) -> None:
    """Meet the other workers and the parent (called inside a worker)."""
    await asyncio.to_thread(barrier.wait, STEP_TIMEOUT)


class Fleet:
    """``fn(*args[i], barrier)`` in process ``i``; the parent meets them with :meth:`sync`."""

    def __init__(
        self, fn: Callable[..., Any], args: Sequence[tuple[Any, ...]], *, timeout: float
    ) -> None:
        self.barrier = mp.get_context("spawn").Barrier(len(args) + 1)
        self._fn = fn
        self._args = [(*a, self.barrier) for a in args]
        self._timeout = timeout
        self._box: dict[str, Any] = {}
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            self._box["results"] = run_in_processes(self._fn, self._args, timeout=self._timeout)
        except BaseException as exc:
            self._box["error"] = exc
            self.barrier.abort()  # wake the parent at once instead of at its step timeout

    def __enter__(self) -> Fleet:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._thread.is_alive():
            self.barrier.abort()
            self._thread.join(self._timeout)

    def sync(self) -> None:
        """Meet the workers at their next :func:`step`."""
        try:
            self.barrier.wait(STEP_TIMEOUT)
        except threading.BrokenBarrierError:
            self._thread.join(30)
            raise self._error() from None

    def results(self) -> list[Any]:
        """Every worker's return value, in order (waits for them to finish)."""
        self._thread.join(self._timeout)
        if "error" in self._box or "results" not in self._box:
            raise self._error()
        results: list[Any] = self._box["results"]
        return results

    def _error(self) -> BaseException:
        err = self._box.get("error")
        if isinstance(err, BaseException):
            return err
        return ProcessFailed("a worker did not reach the barrier in time")
