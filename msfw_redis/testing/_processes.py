"""Run one function in several OS processes against one store and collect the results."""

from __future__ import annotations

import asyncio
import inspect
import multiprocessing as mp
import queue
import time
import traceback
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

__all__ = ["ProcessFailed", "run_in_processes"]


class ProcessFailed(RuntimeError):
    """A worker process raised, died or timed out. The message carries its traceback."""


def _child(fn: Callable[..., Any], index: int, args: tuple[Any, ...], out: Any) -> None:
    try:
        result = fn(*args)
        if inspect.iscoroutine(result):
            result = asyncio.run(result)
        out.put((index, True, result))
    except BaseException:
        out.put((index, False, traceback.format_exc()))


def run_in_processes(
    fn: Callable[..., Any],
    args: Sequence[tuple[Any, ...]],
    *,
    timeout: float = 60.0,
) -> list[Any]:
    """Call ``fn(*args[i])`` in process ``i`` (spawned, so no state is inherited).

    ``fn`` must be importable (module level); it may be ``async``. Results come back in
    the order of ``args``. Any failure kills the remaining workers and raises
    :class:`ProcessFailed`. To release workers together, pass a
    ``multiprocessing.get_context("spawn").Barrier`` among the arguments.
    """
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    procs = [
        ctx.Process(target=_child, args=(fn, i, tuple(a), out), daemon=True)
        for i, a in enumerate(args)
    ]
    for proc in procs:
        proc.start()
    results: dict[int, Any] = {}
    deadline = time.monotonic() + timeout
    try:
        while len(results) < len(procs):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ProcessFailed(f"{len(procs) - len(results)} worker(s) timed out")
            try:
                index, ok, value = out.get(timeout=min(remaining, 0.5))
            except queue.Empty:
                dead = [
                    i for i, p in enumerate(procs)
                    if i not in results and not p.is_alive() and p.exitcode not in (0, None)
                ]  # fmt: skip
                if dead:
                    raise ProcessFailed(
                        f"worker {dead[0]} died with exit code {procs[dead[0]].exitcode}"
                    ) from None
                continue
            if not ok:
                raise ProcessFailed(f"worker {index} raised:\n{value}")
            results[index] = value
    finally:
        for proc in procs:
            proc.join(timeout=5)
            if proc.is_alive():
                proc.kill()
                proc.join(timeout=5)
        out.close()
    return [results[i] for i in range(len(procs))]
