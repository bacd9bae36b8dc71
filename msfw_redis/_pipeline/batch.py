"""Batch calls: run named awaitables together and report each outcome separately."""

from __future__ import annotations

import asyncio
import inspect
import time
from typing import TYPE_CHECKING, Any

from msfw_redis._exceptions import InvalidRequestError, ServiceTimeoutError
from msfw_redis._models import ServiceResult

if TYPE_CHECKING:
    from collections.abc import Awaitable, Iterable

__all__ = ["run_batch"]


def _discard(items: list[tuple[str, Awaitable[Any]]]) -> None:
    # Close coroutines we will never await, so Python does not warn about them.
    for _, aw in items:
        if inspect.iscoroutine(aw):
            aw.close()


async def run_batch(
    calls: Iterable[tuple[str, Awaitable[Any]]],
    *,
    concurrency: int | None = None,
    timeout: float | None = None,
) -> dict[str, ServiceResult]:
    """See :meth:`msfw_redis.ServiceSDK.batch_call`."""
    items = list(calls)
    names = [name for name, _ in items]
    seen: set[str] = set()
    dupes = sorted({n for n in names if n in seen or seen.add(n)})  # type: ignore[func-returns-value]
    if dupes:
        _discard(items)
        raise InvalidRequestError(f"batch_call names must be unique; repeated: {', '.join(dupes)}")
    if concurrency is not None and concurrency < 1:
        _discard(items)
        raise InvalidRequestError(f"concurrency must be >= 1, got {concurrency}")
    if timeout is not None and timeout <= 0:
        _discard(items)
        raise InvalidRequestError(f"timeout must be > 0 seconds, got {timeout}")
    gate = asyncio.Semaphore(concurrency) if concurrency else None

    async def run_one(name: str, aw: Awaitable[Any]) -> ServiceResult:
        started = time.monotonic()
        try:
            if gate is not None:
                async with gate:
                    value = await (asyncio.wait_for(aw, timeout) if timeout else aw)
            else:
                value = await (asyncio.wait_for(aw, timeout) if timeout else aw)
        except TimeoutError:
            err = ServiceTimeoutError(f"batch item {name!r} took longer than {timeout}s")
            return ServiceResult(
                success=False, error=str(err), elapsed=time.monotonic() - started, exception=err
            )
        except Exception as exc:
            return ServiceResult(
                success=False,
                error=str(exc) or type(exc).__name__,
                status_code=getattr(exc, "status_code", None),
                elapsed=time.monotonic() - started,
                exception=exc,
            )
        if isinstance(value, ServiceResult):
            return value
        return ServiceResult(
            success=True, data=value, elapsed=time.monotonic() - started, attempts=1
        )

    results = await asyncio.gather(*(run_one(name, aw) for name, aw in items))
    return dict(zip(names, results, strict=True))
