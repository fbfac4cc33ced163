"""Per-daemon Prometheus metrics and a liveness endpoint on one small HTTP server.

GET /metrics  Prometheus text format
GET /healthz  200 while the main loop makes progress, 503 when it has stalled
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import structlog
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

log = structlog.get_logger(__name__)

LIVENESS_STALL_S = 30.0


class MetricsServer:
    def __init__(
        self,
        registry: CollectorRegistry,
        seconds_since_progress: Callable[[], float],
        host: str,
        port: int,
    ) -> None:
        handler = _handler(registry, seconds_since_progress)
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
    registry: CollectorRegistry, seconds_since_progress: Callable[[], float]
) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == "/metrics":
                self._reply(200, generate_latest(registry), CONTENT_TYPE_LATEST)
            elif self.path == "/healthz":
                stalled = seconds_since_progress()
                alive = stalled < LIVENESS_STALL_S
                body = f"{'ok' if alive else 'stalled'} {stalled:.1f}s since progress\n".encode()
                self._reply(200 if alive else 503, body, "text/plain")
            else:
                self._reply(404, b"not found: try /metrics or /healthz\n", "text/plain")

        def _reply(self, code: int, body: bytes, content_type: str) -> None:
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass  # scrapes every few seconds would drown the journal

    return Handler
