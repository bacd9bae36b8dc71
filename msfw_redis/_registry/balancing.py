"""Choosing one instance of a service: load-balancing strategies, sans I/O.

Nothing here touches Redis or the network. :class:`LoadBalancer` keeps the little
per-process state the strategies need (round-robin counters, calls in flight per
instance) and picks from a list that discovery already produced.

Eligibility, before any strategy runs:

1. Instances for which the caller's ``is_open`` predicate is true (their circuit
   breaker is OPEN) and ``unhealthy`` instances are never chosen.
2. ``healthy`` instances are preferred. Only when none is left are ``recovering`` and
   ``suspect`` ones used: a half-recovered or silent instance beats no instance.

Strategies:

* ``round_robin``: instances in ``instance_id`` order, one after the other, per service
  and per process. Over ``k * n`` calls to ``n`` stable instances, each gets exactly ``k``.
* ``random``: uniform.
* ``weighted``: random, proportional to ``weight``. Weight-0 instances are drained (never
  chosen) unless every candidate has weight 0, when the choice is uniform rather than
  none at all.
* ``least_outstanding``: power of two choices. Two distinct candidates are drawn at
  random and the one with fewer calls in flight *from this process* wins (ties go to the
  first drawn). Calls are counted with :meth:`LoadBalancer.track`.
"""

from __future__ import annotations

import contextlib
import random
from collections import defaultdict
from typing import TYPE_CHECKING, Literal, get_args

from msfw_redis._exceptions import ConfigurationError

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence

    from msfw_redis._registry.instance import ServiceInstance

__all__ = ["DEFAULT_STRATEGY", "STRATEGIES", "LoadBalancer", "Strategy", "eligible_instances"]

Strategy = Literal["round_robin", "random", "weighted", "least_outstanding"]
STRATEGIES: tuple[str, ...] = get_args(Strategy)
DEFAULT_STRATEGY: Strategy = "round_robin"


def eligible_instances(
    instances: Sequence[ServiceInstance],
    is_open: Callable[[ServiceInstance], bool] | None = None,
) -> list[ServiceInstance]:
    """The instances a strategy may choose from, by the tiers in the module docstring."""
    usable = [
        inst
        for inst in instances
        if inst.status != "unhealthy" and (is_open is None or not is_open(inst))
    ]
    preferred = [inst for inst in usable if inst.status == "healthy"]
    return preferred or usable


def _check_strategy(strategy: str) -> Strategy:
    if strategy not in STRATEGIES:
        raise ConfigurationError(
            f"invalid strategy {strategy!r}: expected one of {', '.join(STRATEGIES)}",
            field="strategy",
        )
    return strategy  # type: ignore[return-value]


class LoadBalancer:
    """Picks instances by strategy; one per process, shared by every service.

    Args:
        rng: the random source for ``random``, ``weighted`` and ``least_outstanding``
            (inject a seeded ``random.Random`` for reproducible tests).
    """

    def __init__(self, *, rng: random.Random | None = None) -> None:
        self._rng = rng or random.Random()
        self._next_index: dict[str, int] = defaultdict(int)
        self._outstanding: dict[tuple[str, str], int] = defaultdict(int)

    def choose(
        self,
        instances: Sequence[ServiceInstance],
        *,
        strategy: str = DEFAULT_STRATEGY,
        is_open: Callable[[ServiceInstance], bool] | None = None,
    ) -> ServiceInstance | None:
        """One eligible instance by ``strategy``, or ``None`` when none is eligible.

        ``instances`` should all belong to one service (round-robin counts per name).
        ``is_open(instance)`` returns True when that instance's breaker is OPEN.
        """
        chosen = _check_strategy(strategy)
        candidates = eligible_instances(instances, is_open)
        if not candidates:
            return None
        if len(candidates) == 1:
            return candidates[0]
        if chosen == "round_robin":
            return self._round_robin(candidates)
        if chosen == "random":
            return self._rng.choice(candidates)
        if chosen == "weighted":
            return self._weighted(candidates)
        return self._least_outstanding(candidates)

    def _round_robin(self, candidates: list[ServiceInstance]) -> ServiceInstance:
        ordered = sorted(candidates, key=lambda inst: inst.instance_id)
        service = ordered[0].name
        index = self._next_index[service]
        self._next_index[service] = index + 1
        return ordered[index % len(ordered)]

    def _weighted(self, candidates: list[ServiceInstance]) -> ServiceInstance:
        weights = [inst.weight for inst in candidates]
        if not any(weights):
            return self._rng.choice(candidates)
        return self._rng.choices(candidates, weights=weights, k=1)[0]

    def _least_outstanding(self, candidates: list[ServiceInstance]) -> ServiceInstance:
        first, second = self._rng.sample(candidates, 2)
        if self.outstanding(second) < self.outstanding(first):
            return second
        return first

    def outstanding(self, instance: ServiceInstance) -> int:
        """Calls in flight from this process to ``instance`` (counted by :meth:`track`)."""
        return self._outstanding.get((instance.name, instance.instance_id), 0)

    @contextlib.contextmanager
    def track(self, instance: ServiceInstance) -> Iterator[None]:
        """Count one call in flight to ``instance`` for ``least_outstanding``.

        Use around the call: ``with balancer.track(inst): await call(inst)``.
        """
        key = (instance.name, instance.instance_id)
        self._outstanding[key] += 1
        try:
            yield
        finally:
            remaining = self._outstanding[key] - 1
            if remaining > 0:
                self._outstanding[key] = remaining
            else:
                del self._outstanding[key]
