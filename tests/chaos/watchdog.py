"""Watchdog pings of every daemon, received on real notify sockets as systemd would."""

from __future__ import annotations

import select
import socket
import threading
import time
from pathlib import Path


class PingMonitor:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.sockets: dict[str, socket.socket] = {}
        self.last: dict[str, float] = {}
        self.worst_gap: dict[str, float] = {}
        self.watching: set[str] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def socket_for(self, name: str) -> str:
        if name not in self.sockets:
            path = self.directory / f"notify-{name.replace('@', '-')}.sock"
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            sock.bind(str(path))
            self.sockets[name] = sock
        return str(self.directory / f"notify-{name.replace('@', '-')}.sock")

    def start(self) -> None:
        self._thread.start()

    def begin(self, name: str) -> None:
        """A process of this name (re)started: pings are expected from now on."""
        with self._lock:
            self.last[name] = time.monotonic()
            self.watching.add(name)

    def end(self, name: str) -> None:
        """It is being stopped or killed on purpose: silence is expected."""
        with self._lock:
            self.watching.discard(name)

    def _run(self) -> None:
        while not self._stop.is_set():
            ready, _, _ = select.select(list(self.sockets.values()), [], [], 0.5)
            now = time.monotonic()
            for sock in ready:
                message = sock.recv(4096).decode()
                name = next(n for n, s in self.sockets.items() if s is sock)
                if "WATCHDOG=1" in message or "READY=1" in message:
                    with self._lock:
                        if name in self.watching:
                            gap = now - self.last.get(name, now)
                            self.worst_gap[name] = max(self.worst_gap.get(name, 0.0), gap)
                        self.last[name] = now
            with self._lock:
                for name in self.watching:
                    gap = now - self.last.get(name, now)
                    self.worst_gap[name] = max(self.worst_gap.get(name, 0.0), gap)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        for sock in self.sockets.values():
            sock.close()
