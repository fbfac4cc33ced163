"""The live page (`[web]`), served by the alerts daemon from what it consumes.

Per camera: the newest frame with boxes and track ids, frame rate, age of the
newest result, seq gaps, recent alerts with their snapshots. The pipeline's
health (the broker's and the alerts' consumer lag, dead letters of the last
hour) is read from Kafka itself by `vspd.observe.health`, every
`health_interval_s` on a thread of its own, so the page needs no access to the
other hosts.

The page is static (static/): a script polls /api/live and builds the view
with textContent only; the Content-Security-Policy allows nothing but this
origin's script, style, images and fetches, so neither a camera id, a label
nor a message can become markup or reach another site. With a `token`, every
request needs ``Authorization: Bearer <token>`` or the cookie set by opening
``/?token=<token>`` once. Requests are not logged: their URL may hold it.
"""

from __future__ import annotations

import contextvars
import hashlib
import hmac
import json
import threading
import time
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

import structlog

from vspd.alerts import snapshots
from vspd.alerts.live import CameraView, LiveState
from vspd.config import VspdConfig
from vspd.observe.health import PipelineHealth, gather
from vspd.runtime.paths import UnsafePathError, inside

log = structlog.get_logger(__name__)

NS = 1_000_000_000
COOKIE = "vspd_web_token"
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; media-src 'self'; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
STORED_TYPES = {".jpg": "image/jpeg", ".mp4": "video/mp4", ".webm": "video/webm"}
STATIC = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/live.js": ("live.js", "text/javascript; charset=utf-8"),
    "/live.css": ("live.css", "text/css; charset=utf-8"),
}


@dataclass(frozen=True)
class HealthReading:
    health: PipelineHealth | None
    read_ns: int
    error: str


class HealthWatcher:
    """The pipeline's health from Kafka, read every `interval_s` on its own thread."""

    def __init__(self, config: VspdConfig, interval_s: float) -> None:
        self._config = config
        self._interval_s = interval_s
        self._stopping = threading.Event()
        self.reading = HealthReading(None, 0, "not read yet")
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        context = contextvars.copy_context()
        self._thread = threading.Thread(
            target=context.run, args=(self._run,), name="web-health", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                self.reading = HealthReading(
                    gather(self._config, cameras=False), time.time_ns(), ""
                )
            except Exception as exc:  # noqa: BLE001 - shown on the page, tried again
                self.reading = HealthReading(
                    self.reading.health, self.reading.read_ns, f"{type(exc).__name__}: {exc}"[:300]
                )
            self._stopping.wait(self._interval_s)


class LivePage:
    """What the handler needs; one per daemon."""

    def __init__(self, config: VspdConfig, live: LiveState) -> None:
        self.config = config
        self.live = live
        self.state_dir = Path(config.alerts.state_dir)
        token = config.web.token
        self.token = token.get_secret_value().encode() if token is not None else None
        # The cookie holds a digest of the token, never the token (nor anything
        # a header could be broken by).
        self.cookie = hashlib.sha256(b"vspd-web:" + self.token).hexdigest() if self.token else ""
        self.health = HealthWatcher(config, config.web.health_interval_s)
        self._frames: dict[str, tuple[int, bytes | None]] = {}  # camera -> (seq, drawn JPEG)
        self._frames_lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    def start(self) -> int:
        """Serve; returns the port (0 in the config picks a free one)."""
        web = self.config.web
        page = self

        class Handler(_Handler):
            live_page = page

        self._server = ThreadingHTTPServer((web.host, web.port), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, name="web", daemon=True).start()
        self.health.start()
        port = int(self._server.server_address[1])
        log.info(
            "live page",
            url=f"http://{web.host}:{port}/",
            token="required" if self.token else "none",
        )
        if self.token is None and web.host not in ("127.0.0.1", "::1", "localhost"):
            log.warning(
                "the live page is open to anyone who reaches it",
                host=web.host,
                hint="set [web] token",
            )
        return port

    def stop(self) -> None:
        self.health.stop()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    # -- what the page shows -------------------------------------------------
    def state(self) -> dict[str, Any]:
        now_ns = time.time_ns()
        stale_after_s = self.config.web.stale_after_s
        views = {view.camera: view for view in self.live.cameras()}
        cameras = [self._camera(view, now_ns, stale_after_s) for view in views.values()]
        cameras += [
            {"id": c.id, "age_s": None, "stale": True, "fps": 0.0, "gaps": 0, "seq": None,
             "objects": {}, "frame": None, "alerts": []}
            for c in self.config.cameras
            if c.id not in views
        ]  # fmt: skip
        cameras.sort(key=lambda camera: camera["id"])
        return {
            "time": now_ns // 1_000_000,
            "stale_after_s": stale_after_s,
            "cameras": cameras,
            "health": self._health(now_ns),
        }

    def _camera(self, view: CameraView, now_ns: int, stale_after_s: float) -> dict[str, Any]:
        age_s = view.age_s(now_ns)
        return {
            "id": view.camera,
            "age_s": round(age_s, 1),
            "stale": age_s > stale_after_s,
            "fps": round(view.fps, 1),
            "gaps": view.gaps,
            "seq": view.seq,
            "objects": view.objects,
            "frame": f"api/frame?camera={quote(view.camera)}&seq={view.seq}",
            "alerts": [
                {
                    "key": alert.key,
                    "rule": alert.rule,
                    "label": alert.label,
                    "message": alert.message,
                    "severity": alert.severity,
                    "time": alert.time_ns // 1_000_000,
                    "snapshot": quote(alert.snapshot) if alert.snapshot else None,
                    "clip": quote(alert.clip) if alert.clip else None,
                }
                for alert in view.alerts
            ],
        }

    def _health(self, now_ns: int) -> dict[str, Any]:
        reading = self.health.reading
        health = reading.health
        return {
            "read_s_ago": round((now_ns - reading.read_ns) / NS, 1) if reading.read_ns else None,
            "error": reading.error or None,
            "broker_lag": health.broker.lag if health and health.broker else None,
            "alerts_lag": health.alerts.lag if health and health.alerts else None,
            "dead_letters_last_hour": health.dead_letters_last_hour if health else None,
        }

    def frame(self, camera: str) -> bytes | None:
        """The newest frame of a camera with its boxes and track ids, drawn once per frame."""
        result = self.live.latest_result(camera)
        if result is None:
            return None
        with self._frames_lock:
            drawn = self._frames.get(camera)
            if drawn is not None and drawn[0] == result.frame.seq:
                return drawn[1]
        try:
            jpeg = snapshots.draw(result)
        except Exception:  # noqa: BLE001 - a hostile image: nothing to show
            jpeg = None
        with self._frames_lock:
            self._frames[camera] = (result.frame.seq, jpeg)
        return jpeg

    def stored(self, directory: str, relative: str) -> tuple[bytes, str] | None:
        """A stored snapshot or clip and its type; only files below state_dir/<directory>."""
        parts = [part for part in unquote(relative).split("/") if part]
        if not parts:
            return None
        content_type = STORED_TYPES.get(Path(parts[-1]).suffix)
        if content_type is None or parts[-1].startswith("."):
            return None
        try:
            path = inside(self.state_dir / directory, *parts)
            return path.read_bytes(), content_type
        except (UnsafePathError, OSError, ValueError):
            return None

    def authorized(self, header: str, cookie: str) -> bool:
        if self.token is None:
            return True
        offered = b""
        if header.startswith("Bearer "):
            offered = header.removeprefix("Bearer ").strip().encode()
        else:
            for part in cookie.split(";"):
                name, _, value = part.strip().partition("=")
                if name == COOKIE and hmac.compare_digest(value.encode(), self.cookie.encode()):
                    return True
        return hmac.compare_digest(offered, self.token)


class _Handler(BaseHTTPRequestHandler):
    live_page: LivePage
    server_version = "vspd"
    sys_version = ""

    def log_message(self, format: str, *args: Any) -> None:
        pass  # a request line may hold the token

    def do_GET(self) -> None:
        page = self.live_page
        url = urlsplit(self.path)
        query = parse_qs(url.query)
        if page.token is not None and url.path == "/" and "token" in query:
            offered = query["token"][0].encode()
            if hmac.compare_digest(offered, page.token):
                self._send(
                    HTTPStatus.SEE_OTHER,
                    b"",
                    "text/plain",
                    {
                        "Location": "./",
                        "Set-Cookie": f"{COOKIE}={page.cookie}; HttpOnly; SameSite=Strict; Path=/",
                    },
                )
                return
        if not page.authorized(
            self.headers.get("Authorization", ""), self.headers.get("Cookie", "")
        ):
            self._send(
                HTTPStatus.UNAUTHORIZED,
                b"unauthorized: send Authorization: Bearer <token> or open /?token=<token> once\n",
                "text/plain; charset=utf-8",
            )
            return
        if url.path in STATIC:
            name, content_type = STATIC[url.path]
            body = resources.files("vspd.alerts.web").joinpath("static", name).read_bytes()
            self._send(HTTPStatus.OK, body, content_type)
        elif url.path == "/api/live":
            body = json.dumps(page.state(), allow_nan=False).encode()
            self._send(HTTPStatus.OK, body, "application/json")
        elif url.path == "/api/frame":
            jpeg = page.frame(query.get("camera", [""])[0])
            self._image(jpeg)
        elif url.path.startswith(("/snapshots/", "/clips/")):
            directory, _, relative = url.path.removeprefix("/").partition("/")
            stored = page.stored(directory, relative)
            if stored is None:
                self._send(HTTPStatus.NOT_FOUND, b"not found\n", "text/plain; charset=utf-8")
            else:
                self._send(HTTPStatus.OK, *stored)
        else:
            self._send(HTTPStatus.NOT_FOUND, b"not found\n", "text/plain; charset=utf-8")

    def _image(self, jpeg: bytes | None) -> None:
        if jpeg is None:
            self._send(HTTPStatus.NOT_FOUND, b"no image\n", "text/plain; charset=utf-8")
        else:
            self._send(HTTPStatus.OK, jpeg, "image/jpeg")

    def _send(
        self,
        status: HTTPStatus,
        body: bytes,
        content_type: str,
        extra: dict[str, str] | None = None,
    ) -> None:
        self.send_response(status)
        headers = {
            "Content-Type": content_type,
            "Content-Length": str(len(body)),
            "Content-Security-Policy": CSP,
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer",
            "Cache-Control": "no-store",
            **(extra or {}),
        }
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)
