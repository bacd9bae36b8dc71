"""The two scripts of a fleet-wide health probe round, called and their replies read.

``health_acquire`` decides which replica probes a service this interval (one wins the
round and holds its short lease); ``health_report`` applies the winner's results
through the per-instance hysteresis in Redis, fenced by the round's token, and says
what changed. What a replica does around them (probing, callbacks) is in
``_registry.health``; the scripts themselves are ``lua/health_*.lua``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from msfw_redis._registry.health_state import ProbeRound
from msfw_redis._store.replies import reply_int, reply_list, reply_str

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from msfw_redis._registry.health_state import HealthCheckSettings
    from msfw_redis._registry.scripts import RegistryScripts
    from msfw_redis._store.store import Store

__all__ = ["RoundScripts"]


def _ms(seconds: float) -> int:
    return round(seconds * 1000)


class RoundScripts:
    """Runs ``health_acquire`` and ``health_report`` for one monitor.

    Args:
        store: a started store.
        scripts: the registry's scripts (their keys and retention).
        now_ms: the server time (ms) to pass to the scripts; 0 makes them read ``TIME``.
    """

    def __init__(self, store: Store, scripts: RegistryScripts, now_ms: Callable[[], int]) -> None:
        self.store = store
        self.scripts = scripts
        self._now_ms = now_ms

    async def acquire(
        self, service: str, cfg: HealthCheckSettings, token: str
    ) -> tuple[bool, int, int]:
        """``(won, round number, ms until the next round is due)`` for ``token``."""
        keys = self.scripts.keys(service)
        reply = reply_list(
            await self.store.run(
                "health_acquire",
                [keys.health_probe],
                [
                    self._now_ms(), token, _ms(cfg.interval), _ms(cfg.lease),
                    self.scripts.retention_ms,
                ],
            )
        )  # fmt: skip
        return reply_int(reply[0]) == 1, reply_int(reply[1]), reply_int(reply[2])

    async def report(
        self,
        service: str,
        cfg: HealthCheckSettings,
        token: str,
        round_no: int,
        results: Sequence[tuple[str, bool]],
    ) -> tuple[ProbeRound, int]:
        """Report round ``round_no``'s ``(instance_id, passed)`` results; returns the
        round's outcome and the registry revision after it."""
        keys = self.scripts.keys(service)
        args: list[object] = [
            self._now_ms(), token, cfg.failure_threshold, cfg.success_threshold,
            self.scripts.retention_ms, keys.health_channel, keys.registry_channel,
            service, len(results),
        ]  # fmt: skip
        for instance_id, ok in results:
            args += [instance_id, 1 if ok else 0]
        reply = reply_list(
            await self.store.run(
                "health_report",
                [keys.health_probe, keys.health_instances, keys.health_service, keys.members,
                 keys.revision],
                args,
            )
        )  # fmt: skip
        code, healthy, changed = reply_int(reply[0]), reply_int(reply[1]), reply_int(reply[2])
        seq, revision, count = reply_int(reply[3]), reply_int(reply[4]), reply_int(reply[5])
        transitions = tuple(
            (reply_str(reply[6 + 3 * i]), reply_str(reply[7 + 3 * i]), reply_str(reply[8 + 3 * i]))
            for i in range(count)
        )
        probe = ProbeRound(
            service, round_no, code, healthy == 1, changed == 1, seq, tuple(results), transitions
        )
        return probe, revision
