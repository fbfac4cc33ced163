"""Readiness, apart from liveness: a daemon can be alive and still unable to do its work.

/healthz says the main loop makes progress (restart it if not); /readyz says
whether the daemon does its job now, and if not, what it waits for: Kafka,
its partitions, the processor, its camera. The same reason goes to the log
(once, then every WAIT_REPEAT_S) and to the STATUS line, so that a daemon
that waits never waits silently.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import structlog
from prometheus_client import Gauge

log = structlog.get_logger(__name__)

WAIT_REPEAT_S = 30.0


@dataclass(frozen=True)
class Readiness:
    ready: bool
    reason: str = ""  # what it waits for, when not ready

    @staticmethod
    def first_failing(*checks: Readiness) -> Readiness:
        for check in checks:
            if not check.ready:
                return check
        return READY


READY = Readiness(True)


class AssignmentWait:
    """How long a consumer has had no partitions, said in words and as a metric.

    A broker or alerts daemon with nothing assigned does nothing and says
    nothing unless told: another member holds every partition, the group is
    stuck in a rebalance, or the topic has fewer partitions than members.
    """

    def __init__(
        self,
        group: str,
        topic: str,
        assigned: Gauge,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._group = group
        self._topic = topic
        self._assigned = assigned
        self._clock = clock
        self._since: float | None = clock()
        self._said_at = float("-inf")
        self.count = 0

    def update(self, count: int) -> None:
        """Called every loop iteration with the number of partitions assigned now."""
        now = self._clock()
        if count != self.count:
            self._assigned.set(count)  # which ones, the daemon's own log says
        self.count = count
        if count:
            self._since = None
            return
        if self._since is None:
            self._since = now
            self._said_at = float("-inf")
        # Said at once only after a moment: a normal start takes a few seconds.
        if now - self._since >= 5.0 and now - self._said_at >= WAIT_REPEAT_S:
            self._said_at = now
            log.warning("waiting", reason=self.waiting_for())

    def waiting_for(self) -> str:
        if self.count or self._since is None:
            return ""
        waited = self._clock() - self._since
        return (
            f"waiting for partition assignment from group {self._group} "
            f"(topic {self._topic}) for {waited:.0f} s"
        )

    def readiness(self) -> Readiness:
        reason = self.waiting_for()
        return Readiness(False, reason) if reason else READY
