"""Per-daemon Prometheus metrics and a liveness endpoint on one small HTTP server.

GET /metrics  Prometheus text format
GET /healthz  liveness: 200 while the main loop makes progress, 503 when it has stalled
GET /readyz   readiness: 200 when the daemon does its work now, 503 with what it waits for
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import structlog
from prometheus_client import CollectorRegistry, Counter, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from vspd.runtime.readiness import READY, Readiness

log = structlog.get_logger(__name__)

LIVENESS_STALL_S = 30.0


class MetricsServer:
    def __init__(
        self,
        registry: CollectorRegistry,
        seconds_since_progress: Callable[[], float],
        host: str,
        port: int,
        readiness: Callable[[], Readiness] = lambda: READY,
    ) -> None:
        handler = _handler(registry, seconds_since_progress, readiness)
        self._server = ThreadingHTTPServer((host, port), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="metrics-http", daemon=True
        )

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self) -> MetricsServer:
        self._thread.start()
        host = self._server.server_address[0]
        host = host.decode() if isinstance(host, bytes) else str(host)
        log.info("metrics endpoint", url=f"http://{host}:{self.port}/metrics")
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def _handler(
    registry: CollectorRegistry,
    seconds_since_progress: Callable[[], float],
    readiness: Callable[[], Readiness],
) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == "/metrics":
                self._reply(200, generate_latest(registry), CONTENT_TYPE_LATEST)
            elif self.path == "/healthz":
                stalled = seconds_since_progress()
                alive = stalled < LIVENESS_STALL_S
                if stalled == float("inf"):
                    body = b"stalled: the daemon cannot go on (its log says why)\n"
                else:
                    body = (
                        f"{'ok' if alive else 'stalled'} {stalled:.1f}s since progress\n".encode()
                    )
                self._reply(200 if alive else 503, body, "text/plain")
            elif self.path == "/readyz":
                try:
                    now = readiness()
                except Exception as exc:  # noqa: BLE001 - a probe must answer, whatever happens
                    now = Readiness(False, f"readiness unknown: {type(exc).__name__}")
                body = ("ready\n" if now.ready else f"not ready: {now.reason}\n").encode()
                self._reply(200 if now.ready else 503, body, "text/plain; charset=utf-8")
            else:
                self._reply(404, b"not found: try /metrics, /healthz or /readyz\n", "text/plain")

        def _reply(self, code: int, body: bytes, content_type: str) -> None:
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass  # scrapes every few seconds would drown the journal

    return Handler


def counted(counter: Counter, **labels: str) -> float:
    """What a counter has counted, summed over the labels not given.

    STATUS= lines read the metrics through this, so that nothing is counted
    twice (once for /metrics, once for the status) and the two cannot disagree.
    """
    return sum(
        sample.value
        for metric in counter.collect()
        for sample in metric.samples
        if sample.name.endswith("_total")
        and all(sample.labels.get(key) == value for key, value in labels.items())
    )


class SlidingRate:
    """Events per second over the last `span_s`, from a running total sampled now and then."""

    def __init__(self, span_s: float = 10.0) -> None:
        self._span_s = span_s
        self._samples: list[tuple[float, float]] = []

    def update(self, total: float, now: float | None = None) -> float:
        now = time.monotonic() if now is None else now
        self._samples.append((now, total))
        self._samples = [(t, n) for t, n in self._samples if now - t <= self._span_s]
        (t0, n0), (t1, n1) = self._samples[0], self._samples[-1]
        return (n1 - n0) / (t1 - t0) if t1 > t0 else 0.0
