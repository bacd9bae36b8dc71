"""The heartbeats of the instances this process registered.

Each owned instance gets a task that renews its lease (deadline = Redis server time +
ttl) about every ``ttl / 3``, with jitter. A token fences it: once the instance is
deregistered, or another registration takes its id, a late heartbeat is refused and the
task stops. An instance that expired (a long pause, an outage, lost Redis data)
registers again under a fresh token, and wakes every other owner, which may have lost
its registration the same way. The tasks wake at once when the store recovers from an
outage, and when a lookup comes back without an instance this process owns.

The registry (``_registry.registry``) decides what is registered; this module owns
keeping it alive and stopping that, boundedly, on close.
"""

from __future__ import annotations

import asyncio
import logging
import math
import secrets
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from msfw_redis._exceptions import StoreError
from msfw_redis._registry.scripts import FENCED, RENEWED, UNKNOWN
from msfw_redis._shutdown import pause

if TYPE_CHECKING:
    import random
    from collections.abc import Awaitable, Callable, Sequence

    from msfw_redis._registry.discovery import RegistryStats
    from msfw_redis._registry.instance import ServiceInstance
    from msfw_redis._registry.scripts import HeartbeatResult, RegistryScripts

__all__ = ["Heartbeats", "OwnedInstance"]

logger = logging.getLogger("msfw_redis.registry")

#: Heartbeat retry delay after a failed beat, so that recovery is noticed soon (s).
_RETRY_AFTER_FAILURE = 0.5
#: An owner missing from lookups of its service is woken at most this often (s).
_MISSING_WAKE_INTERVAL = 1.0


def _ms(seconds: float) -> int:
    return round(seconds * 1000)


@dataclass(slots=True, eq=False)
class OwnedInstance:
    """A registration this process keeps alive (mutable: the token rotates)."""

    service: str
    instance_id: str
    record: str
    ttl: float
    token: str
    wake: asyncio.Event
    registered: bool = False
    stopped: bool = False
    task: asyncio.Task[None] | None = None


class Heartbeats:
    """The owned instances, by ``(service, instance_id)``, and their heartbeat tasks.

    Args:
        scripts: the registry's scripts (``registry_heartbeat``).
        stats: the registry's counters (heartbeats, failures, re-registrations, fenced).
        register: registers an owned instance (again) under its current token.
        touch_index: refreshes a service's entry in the global index (rate-limited).
        saw_revision: tells the discovery cache the revision a script returned.
        op_timeout: the store's operation timeout (s); bounds the wait on close.
        rng: random source for the jitter.
    """

    def __init__(
        self,
        scripts: RegistryScripts,
        stats: RegistryStats,
        *,
        register: Callable[[OwnedInstance], Awaitable[None]],
        touch_index: Callable[[str], Awaitable[None]],
        saw_revision: Callable[[str, int], None],
        op_timeout: float,
        rng: random.Random,
    ) -> None:
        self.scripts = scripts
        self.stats = stats
        self.owned: dict[tuple[str, str], OwnedInstance] = {}
        self.closed = False
        self._register = register
        self._touch_index = touch_index
        self._saw_revision = saw_revision
        self._op_timeout = op_timeout
        self._rng = rng
        # Monotonic time an owner missing from a lookup was last woken, per service.
        self._missing_woken: dict[str, float] = {}

    def start(self, owned: OwnedInstance) -> None:
        """Run ``owned``'s heartbeat task on the running loop."""
        owned.task = asyncio.create_task(self._loop(owned), name=f"msfw-heartbeat-{owned.service}")

    def rebind(self) -> None:
        """Make each owned instance's event and task anew on the running loop."""
        for owned in self.owned.values():
            owned.wake = asyncio.Event()
            if owned.task is not None and not owned.stopped:
                self.start(owned)

    async def stop(self, owned: OwnedInstance) -> None:
        """Stop ``owned``'s heartbeats; waits for a beat in flight at most four op timeouts."""
        owned.stopped = True
        owned.wake.set()
        task, owned.task = owned.task, None
        if task is None or task is asyncio.current_task():
            return
        try:
            # Let an in-flight beat finish (bounded by the op timeout) rather than cancel
            # it mid-command; the deregistration that follows fences it in any case.
            async with asyncio.timeout(self._op_timeout * 4):
                await asyncio.shield(task)
        except TimeoutError:
            task.cancel()

    async def run_heartbeat(self, owned: OwnedInstance) -> HeartbeatResult:
        """One ``registry_heartbeat`` call for ``owned``, counted."""
        result = await self.scripts.heartbeat(
            owned.service, owned.instance_id, owned.token, _ms(owned.ttl)
        )
        self.stats.heartbeats += 1
        self._saw_revision(owned.service, result.revision)
        return result

    async def beat(self, owned: OwnedInstance) -> bool:
        """One heartbeat (or a pending registration); False once the id is fenced."""
        if not owned.registered:
            await self._register(owned)
            logger.info("registered %s/%s now that Redis answers", owned.service, owned.instance_id)
            return True
        result = await self.run_heartbeat(owned)
        if result.code == RENEWED:
            await self._touch_index(owned.service)
            return True
        if result.code == UNKNOWN:
            # Expired and reaped (a long pause or outage), or Redis lost its data: come
            # back under a fresh token rather than stay invisible.
            self.stats.reregistrations += 1
            owned.token = secrets.token_hex(8)
            # Whatever lost this id may have lost the others too: wake every owner now
            # rather than let each find out at its own next heartbeat.
            self.wake_all(but=owned)
            await self._register(owned)
            logger.info(
                "%s/%s was no longer registered (expired or data lost); registered again",
                owned.service, owned.instance_id,
            )  # fmt: skip
            return True
        if result.code == FENCED:
            self.stats.fenced += 1
            logger.warning(
                "heartbeat of %s/%s refused: it was deregistered, or another registration "
                "took its id (do two replicas advertise the same host:port? give each a "
                "routable host or its own instance_id); its heartbeats stop",
                owned.service, owned.instance_id,
            )  # fmt: skip
        return False

    def wake_all(self, but: OwnedInstance | None = None) -> None:
        """Beat every owned instance (except ``but``) now; nothing once closed."""
        if self.closed:
            return
        for owned in self.owned.values():
            if owned is not but:
                owned.wake.set()

    def wake_missing_from(self, service: str, instances: Sequence[ServiceInstance]) -> None:
        """Wake the heartbeat of an instance this process owns that the list lacks.

        A data loss is seen by the revision going backwards only until the first owner
        registers again (its revision starts from server time, above any cached one);
        a process that looks later sees a list without its own instance and nothing
        else amiss. Its heartbeat then finds the id unknown and registers it again.
        At most once a second per service, so an owned instance that the list leaves
        out for another reason costs no heartbeat per lookup.
        """
        if not self.owned:
            return
        mine = [
            o for (svc, _), o in self.owned.items()
            if svc == service and o.registered and not o.stopped
        ]  # fmt: skip
        if not mine:
            return
        listed = {inst.instance_id for inst in instances}
        missing = [o for o in mine if o.instance_id not in listed]
        now = time.monotonic()
        last = self._missing_woken.get(service, -math.inf)
        if not missing or now - last < _MISSING_WAKE_INTERVAL:
            return
        self._missing_woken[service] = now
        for owned in missing:
            owned.wake.set()

    async def _loop(self, owned: OwnedInstance) -> None:
        failed = False
        while True:
            delay = owned.ttl / 3.0 * self._rng.uniform(0.8, 1.0)
            if failed:
                delay = min(delay, _RETRY_AFTER_FAILURE)
            await pause(owned.wake, delay)
            owned.wake.clear()
            if owned.stopped:
                return
            try:
                alive = await self.beat(owned)
            except StoreError as exc:
                # The store logs each outage once; a failed beat is counted here.
                failed = True
                self.stats.heartbeat_failures += 1
                logger.debug("heartbeat of %s/%s failed: %s", owned.service, owned.instance_id, exc)
                continue
            except Exception:
                # A bug must not silently let the instance expire: log it, keep beating.
                failed = True
                self.stats.heartbeat_failures += 1
                logger.exception("heartbeat of %s/%s crashed", owned.service, owned.instance_id)
                continue
            failed = False
            if not alive:
                owned.stopped = True
                if self.owned.get((owned.service, owned.instance_id)) is owned:
                    del self.owned[(owned.service, owned.instance_id)]
                return
