"""A real Kafka-protocol broker (Tansu) on loopback: the demo's embedded broker, plus pause/resume."""

from __future__ import annotations

import os
import signal
from pathlib import Path

from vspd.demo.embedded_kafka import EmbeddedKafka, free_port, tansu_binary

__all__ = ["TansuBroker", "free_port", "tansu_binary"]


class TansuBroker(EmbeddedKafka):
    """SIGSTOP/SIGCONT make a broker that hangs without closing connections."""

    def __init__(self, port: int, log_path: Path) -> None:
        super().__init__(log_path, port)

    def pause(self) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGSTOP)

    def resume(self) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGCONT)

    def stop(self) -> None:
        if self.process is not None:
            self.resume()  # a stopped process cannot act on SIGTERM
        super().stop()
