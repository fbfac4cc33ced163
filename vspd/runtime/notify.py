"""The systemd notify protocol through `sdnotify` (python3-sdnotify in Debian).

sdnotify speaks the datagram protocol; what is vspd's own is when to speak:
READY once started, STATUS lines, STOPPING, and watchdog pings that come only
from the daemon's main loop (``Lifecycle.tick``), so a loop that hangs stops
pinging and systemd restarts it. Without ``NOTIFY_SOCKET`` every call is a
no-op, so daemons call it unconditionally. Like sd_notify(3), the socket and
the watchdog settings come from the environment.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from typing import Any

import sdnotify
import structlog

log = structlog.get_logger(__name__)


class SystemdNotifier:
    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        environ = os.environ if environ is None else environ
        self._notifier: Any = None
        if environ.get("NOTIFY_SOCKET"):
            self._notifier = _connect(environ["NOTIFY_SOCKET"])
        self.watchdog_interval_s = _watchdog_interval(environ)
        self._last_ping = float("-inf")

    @property
    def enabled(self) -> bool:
        return self._notifier is not None

    def ready(self, status: str = "") -> None:
        self._send("READY=1" + (f"\nSTATUS={status}" if status else ""))

    def status(self, status: str) -> None:
        self._send(f"STATUS={status}")

    def stopping(self, status: str = "") -> None:
        self._send("STOPPING=1" + (f"\nSTATUS={status}" if status else ""))

    def watchdog(self) -> None:
        """Ping the watchdog, at most twice per interval systemd asked for."""
        if self.watchdog_interval_s is None:
            return
        now = time.monotonic()
        if now - self._last_ping >= self.watchdog_interval_s / 2:
            self._last_ping = now
            self._send("WATCHDOG=1")

    def close(self) -> None:
        if self._notifier is not None and self._notifier.socket is not None:
            self._notifier.socket.close()
        self._notifier = None

    def _send(self, message: str) -> None:
        if self._notifier is None:
            return
        try:
            # sdnotify encodes Latin-1; systemd reads UTF-8: hand it the UTF-8 bytes as
            # Latin-1 characters, so that a STATUS with "…" or any other text goes through.
            self._notifier.notify(message.encode("utf-8").decode("latin-1"))
        except (OSError, ValueError) as exc:
            # systemd gone or socket full: the daemon keeps working regardless.
            log.warning("sd_notify failed", error=str(exc))


def _connect(address: str) -> Any:
    """sdnotify's notifier for `address`; it reads NOTIFY_SOCKET itself, so it is given it."""
    saved = os.environ.get("NOTIFY_SOCKET")
    os.environ["NOTIFY_SOCKET"] = address
    try:
        # debug=True: failures raise instead of passing silently, and are said once here.
        return sdnotify.SystemdNotifier(debug=True)
    except (OSError, TypeError) as exc:
        log.warning("sd_notify unavailable", socket=address, error=str(exc))
        return None
    finally:
        if saved is None:
            os.environ.pop("NOTIFY_SOCKET", None)
        else:
            os.environ["NOTIFY_SOCKET"] = saved


def _watchdog_interval(environ: Mapping[str, str]) -> float | None:
    usec = environ.get("WATCHDOG_USEC", "")
    pid = environ.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) == 0:
        return None
    if pid and pid != str(os.getpid()):
        return None  # meant for another process (e.g. our parent)
    return int(usec) / 1_000_000
