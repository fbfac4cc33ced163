"""One daemon lifecycle for capture, broker, processor and alerts.

start -> READY=1 -> loop { step(); tick() } until stop is asked -> STOPPING=1 -> drain -> exit 0.

Signal handlers only set a flag; the loop notices it. A second SIGINT exits at
once (an operator at a terminal who does not want to wait for the drain).
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from types import FrameType
from typing import Protocol

import structlog

from vspd.runtime.notify import SystemdNotifier
from vspd.runtime.readiness import READY, Readiness

log = structlog.get_logger(__name__)

STATUS_INTERVAL_S = 2.0
TERMINAL_STATUS_INTERVAL_S = 30.0  # the STATUS line printed at a terminal this often
READINESS_INTERVAL_S = 0.5


class Daemon(Protocol):
    """What the lifecycle drives. step() must return within about a second."""

    name: str

    def start(self) -> None: ...

    def step(self) -> None: ...

    def status(self) -> str: ...

    def readiness(self) -> Readiness: ...

    def drain(self) -> None: ...


class StopFlag:
    """Set by SIGTERM/SIGINT (or by code); the main loop polls it."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self._interrupts = 0

    def install(self) -> StopFlag:
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        return self

    def set(self) -> None:
        self._event.set()

    def is_set(self) -> bool:
        return self._event.is_set()

    def wait(self, timeout: float) -> bool:
        return self._event.wait(timeout)

    @property
    def interrupted(self) -> bool:
        """Stopped by Ctrl-C (SIGINT) rather than by systemd's SIGTERM."""
        return self._interrupts > 0

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        if signum == signal.SIGINT:
            self._interrupts += 1
            if self._interrupts > 1:
                os._exit(130)  # second Ctrl-C: the user does not want to wait
        self._event.set()


class Lifecycle:
    """Progress bookkeeping of a running daemon: watchdog, STATUS, liveness and readiness.

    Readiness is asked of the daemon on its own thread, in tick(), and kept for
    the HTTP probe (which must not read the daemon's state from another thread).
    At a terminal the STATUS line is also printed now and then (systemd shows
    it in `systemctl status`; a person running the daemon by hand sees it here).
    """

    def __init__(
        self,
        notifier: SystemdNotifier,
        status: Callable[[], str],
        readiness: Callable[[], Readiness] | None = None,
        at_terminal: bool | None = None,
        alive: Callable[[], bool] | None = None,
    ) -> None:
        self.notifier = notifier
        # A daemon whose loop runs but whose work cannot go on (a camera read that
        # hangs) says so here: no watchdog ping, no progress, and systemd restarts it.
        self._alive = alive
        self._gave_up = False
        self._status = status
        self._readiness = readiness
        self._last_status = float("-inf")
        self._last_printed = time.monotonic()
        self._last_readiness = float("-inf")
        self._ready = Readiness(False, "starting")
        self._at_terminal = sys.stdout.isatty() if at_terminal is None else at_terminal
        self.last_progress = time.monotonic()

    def tick(self) -> None:
        """Called once per main-loop iteration: proof that the loop is alive."""
        now = time.monotonic()
        self._gave_up = self._alive is not None and not self._alive()
        if not self._gave_up:
            self.last_progress = now
            self.notifier.watchdog()
        if now - self._last_readiness >= READINESS_INTERVAL_S:
            self._last_readiness = now
            self._ready = self._readiness() if self._readiness is not None else READY
        if now - self._last_status >= STATUS_INTERVAL_S:
            self._last_status = now
            text = self._status()
            self.notifier.status(text)
            if self._at_terminal and now - self._last_printed >= TERMINAL_STATUS_INTERVAL_S:
                self._last_printed = now
                log.info("status", status=text)

    def seconds_since_progress(self) -> float:
        """For /healthz: infinite once the daemon said it cannot go on (see `alive`)."""
        if self._gave_up:
            return float("inf")
        return time.monotonic() - self.last_progress

    def readiness(self) -> Readiness:
        return self._ready


def run_daemon(daemon: Daemon, stop: StopFlag, lifecycle: Lifecycle) -> int:
    """Run a daemon to completion; returns the process exit code."""
    daemon.start()
    lifecycle.notifier.ready(daemon.status())
    log.info("serving", status=daemon.status())
    try:
        while not stop.is_set():
            daemon.step()
            lifecycle.tick()
    finally:
        lifecycle.notifier.stopping("draining")
        # Said after the handler returned (a handler only sets the flag): what
        # the daemon now waits for, and how not to wait.
        hint = {"hint": "a second Ctrl-C quits at once"} if stop.interrupted else {}
        log.info("draining", finishing="what is in flight", status=daemon.status(), **hint)
        daemon.drain()
        log.info("stopped", status=daemon.status())
        lifecycle.notifier.close()
    return 0
