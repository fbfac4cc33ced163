"""Readiness apart from liveness: what a daemon waits for, in words and as a metric."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Gauge

from vspd.runtime.readiness import READY, AssignmentWait, Readiness


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def make() -> tuple[AssignmentWait, CollectorRegistry, Clock]:
    clock = Clock()
    registry = CollectorRegistry()
    gauge = Gauge("assigned", "test", registry=registry)
    return AssignmentWait("vspd-broker", "vspd.frames", gauge, clock), registry, clock


def test_no_partitions_is_not_ready_and_says_for_how_long() -> None:
    wait, registry, clock = make()
    wait.update(0)
    clock.now += 30
    wait.update(0)
    assert wait.readiness() == Readiness(
        False,
        "waiting for partition assignment from group vspd-broker (topic vspd.frames) for 30 s",
    )
    assert registry.get_sample_value("assigned") == 0
    wait.update(3)
    assert wait.readiness() == READY
    assert registry.get_sample_value("assigned") == 3
    assert wait.waiting_for() == ""
    # Losing every partition later starts a new wait, counted from then.
    clock.now += 100
    wait.update(0)
    clock.now += 2
    assert wait.waiting_for().endswith("for 2 s")


def test_the_first_failing_check_is_the_reason() -> None:
    kafka = Readiness(False, "Kafka unreachable: connection refused")
    assert Readiness.first_failing(READY, kafka, Readiness(False, "later")) == kafka
    assert Readiness.first_failing(READY, READY) == READY
