"""``msfw-redis demo`` end to end: the parent, its replica processes and a shared store.

Each run is a separate ``python -m msfw_redis demo`` process. While it runs, the test
records every descendant process (psutil); after it exits, none may be left.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any

import psutil
import pytest

from msfw_redis._cli.demo_plan import DemoPlan
from msfw_redis._cli.demo_report import Transitions

pytestmark = pytest.mark.slow

GUARANTEES = {
    "breaker_opened_once",
    "probes_within_limit",
    "one_origin_call_per_key",
    "dead_instance_evicted",
}
#: A no-hang bound for one demo run, far above its planned time.
RUN_BOUND = 120.0


@dataclass
class DemoRun:
    code: int
    out: str
    err: str
    descendants: set[tuple[int, float]] = field(default_factory=set)

    def summary(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.out)
        return data

    def left_behind(self) -> list[int]:
        """Recorded descendants that still run (same pid and start time, not a zombie)."""
        alive = []
        for pid, created in self.descendants:
            try:
                proc = psutil.Process(pid)
                if proc.create_time() == created and proc.status() != psutil.STATUS_ZOMBIE:
                    alive.append(pid)
            except psutil.NoSuchProcess:
                continue
        return alive


def run_demo(*args: str, interrupt_after: str | None = None) -> DemoRun:
    """Run the demo; with ``interrupt_after``, send SIGINT once that text is printed."""
    env = dict(os.environ)
    env.pop("MSFW_REDIS_URL", None)
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "msfw_redis", "demo", *args], stdout=out, stderr=err, env=env
        )
        run = DemoRun(0, "", "")
        deadline = time.monotonic() + RUN_BOUND
        interrupted = False
        try:
            parent = psutil.Process(proc.pid)
            while proc.poll() is None:
                if time.monotonic() > deadline:
                    pytest.fail(f"the demo did not finish within {RUN_BOUND}s")
                try:
                    for child in parent.children(recursive=True):
                        run.descendants.add((child.pid, child.create_time()))
                except psutil.NoSuchProcess:
                    pass
                if interrupt_after is not None and not interrupted:
                    out.seek(0)
                    if interrupt_after in out.read().decode(errors="replace"):
                        proc.send_signal(signal.SIGINT)
                        interrupted = True
                time.sleep(0.05)
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
        out.seek(0)
        err.seek(0)
        run.code = proc.returncode
        run.out = out.read().decode()
        run.err = err.read().decode()
    return run


def check_guarantees(run: DemoRun, replicas: int) -> dict[str, Any]:
    assert run.code == 0, run.err or run.out
    assert "Traceback" not in run.err
    summary = run.summary()
    held = {g["key"]: g["held"] for g in summary["guarantees"]}
    assert held == dict.fromkeys(GUARANTEES, True), summary["guarantees"]
    assert summary["ok"] is True
    assert summary["interrupted"] is False
    assert summary["replicas"] == replicas
    guarantees = {g["key"]: g for g in summary["guarantees"]}
    assert guarantees["breaker_opened_once"]["trips"] == 1
    assert guarantees["breaker_opened_once"]["replicas_rejecting"] == replicas
    assert 1 <= guarantees["probes_within_limit"]["max_probes_at_once"] <= 1
    cache = guarantees["one_origin_call_per_key"]
    assert cache["cold_keys"] >= 1
    assert set(cache["origin_calls_per_key"].values()) == {1}
    assert guarantees["dead_instance_evicted"]["instances_left"] == ["order-1"]
    for replica in summary["per_replica"]:
        assert replica["ok"] > 0
        assert replica["rejected"] > 0
    assert len(run.descendants) >= replicas
    assert run.left_behind() == []
    return summary


def test_demo_on_the_embedded_store() -> None:
    """With nothing but the package: exit 0, every guarantee measured and held, and no
    replica process left once the demo has exited."""
    run = run_demo("--seconds", "8", "--json")
    summary = check_guarantees(run, replicas=3)
    assert summary["store"].startswith("embedded fakeredis at redis://127.0.0.1:")


@pytest.mark.real_redis
def test_demo_on_a_real_server(real_redis_url: str, key_prefix: str) -> None:
    """The same run on a real Redis (given with --redis-url, under a prefix of its own),
    with two replicas."""
    run = run_demo(
        "--seconds", "8", "--replicas", "2", "--redis-url", real_redis_url,
        "--prefix", key_prefix, "--json",
    )  # fmt: skip
    summary = check_guarantees(run, replicas=2)
    assert summary["store"] == real_redis_url


def test_ctrl_c_stops_cleanly_and_leaves_no_process() -> None:
    """SIGINT mid-run (as Ctrl-C sends it): the replicas are stopped, the summary covers
    what was measured, the exit code is 0 and no process is left behind."""
    run = run_demo("--seconds", "60", interrupt_after="phase HEALTHY")
    assert run.code == 0, run.err
    assert "Traceback" not in run.err
    assert "interrupted" in run.out
    assert "[FAIL]" not in run.out
    # The 3 replicas at least (a short-lived helper process may show up under load);
    # whatever was seen, none of it may outlive the demo.
    assert len(run.descendants) >= 3
    assert run.left_behind() == []


def test_trips_count_only_closed_to_open() -> None:
    """Re-opening after a failed probe is not a new trip; generations at or below the
    demo's reset are ignored."""
    transitions = Transitions(reset_gen=4)
    for gen, state in [
        (3, "open"), (5, "open"), (6, "half_open"), (7, "open"), (8, "half_open"),
        (9, "closed"), (10, "open"),
    ]:  # fmt: skip
        transitions.add(gen, state)
    assert transitions.trips() == [5, 10]
    assert transitions.count("half_open") == 2
    assert transitions.missing() == 0


def test_plan_phases_split_the_run() -> None:
    """Phases follow one another and the breaker cools down several times while failing."""
    plan = DemoPlan(seconds=8, replicas=3, redis_url="redis://x")
    assert [plan.phase_at(t) for t in (-1, 0, 2.5, 5.3, 8)] == [
        "starting", "healthy", "failing", "recovering", "done",
    ]  # fmt: skip
    assert (plan.failing_end - plan.healthy_end) / plan.cooldown >= 2
    assert DemoPlan.from_json(plan.to_json()) == plan
    assert not plan.new_key_allowed(plan.healthy_end - 0.01, breaker_closed=True)
    assert not plan.new_key_allowed(plan.healthy_end + 0.1, breaker_closed=True)
    assert not plan.new_key_allowed(plan.failing_end + 0.1, breaker_closed=False)
    assert plan.new_key_allowed(plan.failing_end + 0.1, breaker_closed=True)
