"""Load-balancing strategies, without Redis (msfw_redis._registry.balancing)."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from msfw_redis._exceptions import ConfigurationError
from msfw_redis._registry.balancing import STRATEGIES, LoadBalancer, eligible_instances
from msfw_redis._registry.instance import InstanceStatus, ServiceInstance


def make(
    port: int, *, status: InstanceStatus = "healthy", weight: int = 1, name: str = "orders"
) -> ServiceInstance:
    return ServiceInstance(
        name=name,
        host="10.0.0.1",
        port=port,
        instance_id=f"10.0.0.1:{port}",
        status=status,
        weight=weight,
    )


def port_of(chosen: ServiceInstance | None) -> int:
    """The chosen instance's port (fails the test when nothing was chosen)."""
    assert chosen is not None
    return chosen.port


def test_round_robin_is_exact() -> None:
    """30 calls over 3 instances give exactly 10/10/10, in instance_id order."""
    lb = LoadBalancer()
    instances = [make(8003), make(8001), make(8002)]
    picks = [lb.choose(instances, strategy="round_robin") for _ in range(30)]
    counts = Counter(p.port for p in picks if p is not None)
    assert counts == {8001: 10, 8002: 10, 8003: 10}
    assert [p.port for p in picks[:6] if p is not None] == [8001, 8002, 8003] * 2


def test_round_robin_counts_per_service() -> None:
    """Two services keep separate round-robin positions."""
    lb = LoadBalancer()
    a = [make(1, name="a"), make(2, name="a")]
    b = [make(1, name="b"), make(2, name="b")]
    first_a = lb.choose(a)
    first_b = lb.choose(b)
    assert port_of(first_a) == port_of(first_b) == 1


def test_weighted_follows_weights_within_tolerance() -> None:
    """Weights 1:2:7 over 20,000 draws give 10/20/70 % within 2 points (> 6 sigma)."""
    lb = LoadBalancer(rng=random.Random(1234))
    instances = [make(1, weight=1), make(2, weight=2), make(3, weight=7)]
    draws = 20_000
    counts = Counter(port_of(lb.choose(instances, strategy="weighted")) for _ in range(draws))
    for port, expected in ((1, 0.1), (2, 0.2), (3, 0.7)):
        assert abs(counts[port] / draws - expected) < 0.02, counts


def test_weighted_drains_zero_weight_unless_all_zero() -> None:
    """Weight 0 is never chosen, unless every candidate has weight 0 (then uniform)."""
    lb = LoadBalancer(rng=random.Random(7))
    instances = [make(1, weight=0), make(2, weight=3)]
    assert {port_of(lb.choose(instances, strategy="weighted")) for _ in range(500)} == {2}
    zeros = [make(1, weight=0), make(2, weight=0)]
    assert {port_of(lb.choose(zeros, strategy="weighted")) for _ in range(500)} == {1, 2}


def test_random_is_roughly_uniform() -> None:
    """Random over 3 instances gives each a third within 3 points over 9,000 draws."""
    lb = LoadBalancer(rng=random.Random(99))
    instances = [make(1), make(2), make(3)]
    counts = Counter(port_of(lb.choose(instances, strategy="random")) for _ in range(9_000))
    for port in (1, 2, 3):
        assert abs(counts[port] / 9_000 - 1 / 3) < 0.03


def test_least_outstanding_prefers_the_idle_instance() -> None:
    """Power of two choices never picks the busier of the two it samples."""
    lb = LoadBalancer(rng=random.Random(5))
    busy, idle = make(1), make(2)
    with lb.track(busy), lb.track(busy):
        assert lb.outstanding(busy) == 2
        picks = {port_of(lb.choose([busy, idle], strategy="least_outstanding")) for _ in range(50)}
    assert picks == {2}
    assert lb.outstanding(busy) == 0


def test_least_outstanding_spreads_load_over_many() -> None:
    """With calls held open, P2C keeps the in-flight counts within one of each other."""
    lb = LoadBalancer(rng=random.Random(11))
    instances = [make(p) for p in range(1, 6)]
    held = []
    for _ in range(50):
        chosen = lb.choose(instances, strategy="least_outstanding")
        assert chosen is not None
        cm = lb.track(chosen)
        cm.__enter__()
        held.append(cm)
    counts = [lb.outstanding(inst) for inst in instances]
    assert sum(counts) == 50
    assert max(counts) - min(counts) <= 3
    for cm in held:
        cm.__exit__(None, None, None)
    assert all(lb.outstanding(inst) == 0 for inst in instances)


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_unhealthy_and_breaker_open_are_skipped(strategy: str) -> None:
    """Every strategy skips unhealthy instances and those whose breaker is OPEN."""
    lb = LoadBalancer(rng=random.Random(3))
    instances = [make(1, status="unhealthy"), make(2), make(3)]

    def is_open(inst: ServiceInstance) -> bool:
        return inst.port == 3

    picks = {port_of(lb.choose(instances, strategy=strategy, is_open=is_open)) for _ in range(60)}
    assert picks == {2}


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_none_when_nothing_is_eligible(strategy: str) -> None:
    """No instance, or only unhealthy / open ones, gives None."""
    lb = LoadBalancer()
    assert lb.choose([], strategy=strategy) is None
    only_bad = [make(1, status="unhealthy"), make(2)]
    assert lb.choose(only_bad, strategy=strategy, is_open=lambda i: i.port == 2) is None


def test_healthy_preferred_over_suspect_and_recovering() -> None:
    """Suspect and recovering instances are used only when no healthy one is left."""
    mixed = [make(1, status="suspect"), make(2, status="recovering"), make(3)]
    assert [i.port for i in eligible_instances(mixed)] == [3]
    fallback = [
        make(1, status="suspect"),
        make(2, status="recovering"),
        make(3, status="unhealthy"),
    ]
    assert [i.port for i in eligible_instances(fallback)] == [1, 2]


def test_unknown_strategy_is_a_configuration_error() -> None:
    """A misspelt strategy names the field."""
    with pytest.raises(ConfigurationError) as info:
        LoadBalancer().choose([make(1)], strategy="round-robin")
    assert info.value.field == "strategy"


def test_track_releases_on_error() -> None:
    """A call that raises still releases its in-flight slot."""
    lb = LoadBalancer()
    inst = make(1)
    with pytest.raises(RuntimeError), lb.track(inst):
        raise RuntimeError("boom")
    assert lb.outstanding(inst) == 0
