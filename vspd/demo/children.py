"""The demo's daemons as child processes, exactly as systemd would run them, and their metrics."""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    # If the demo itself is killed, its children must not linger.
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


class Child:
    def __init__(self, name: str, args: list[str], log_dir: Path, metrics_port: int) -> None:
        self.name = name
        self.args = args
        self.log_path = log_dir / f"{name}.log"
        self.metrics_port = metrics_port
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> Child:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(  # noqa: S603 - this interpreter running vspd
                [sys.executable, "-m", "vspd", *self.args],
                stdout=log,
                stderr=subprocess.STDOUT,
                # Ctrl-C reaches only the demo, which stops the children in order.
                start_new_session=True,
                preexec_fn=_die_with_parent,  # noqa: PLW1509 - only a prctl, no locks involved
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        return self

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, timeout_s: float = 60.0) -> int | None:
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()

    def readiness(self) -> str:
        """ "" when the child says it is ready (/readyz), else what it waits for."""
        url = f"http://127.0.0.1:{self.metrics_port}/readyz"
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                response.read()
                return ""
        except urllib.error.HTTPError as refused:
            return refused.read().decode(errors="replace").strip().removeprefix("not ready: ")
        except (urllib.error.URLError, OSError):
            return "not answering yet"

    def metrics(self) -> dict[str, float]:
        """Every sample of the child's /metrics (labels folded into the name); {} if not up."""
        try:
            with urllib.request.urlopen(
                f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=2
            ) as response:
                body = response.read().decode()
        except (urllib.error.URLError, OSError):
            return {}
        samples: dict[str, float] = {}
        for family in text_string_to_metric_families(body):
            for sample in family.samples:
                labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
                samples[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
        return samples


def total(samples: dict[str, float], name: str) -> float:
    """Sum of a metric over its labels."""
    return sum(value for key, value in samples.items() if key == name or key.startswith(name + "{"))
