"""A real MJPEG-over-HTTP camera for the tests: multipart/x-mixed-replace on loopback."""

from __future__ import annotations

import base64
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import cv2

from vspd.capture.sources.synthetic import SyntheticScene

BOUNDARY = "vspdframe"


class MjpegCamera:
    def __init__(self, port: int, fps: float = 20.0, login: tuple[str, str] | None = None) -> None:
        self.port = port
        # With a login, only requests with that basic auth get the stream (others: 401).
        self.login = login
        self.refused = 0
        self.fps = fps
        self.frames_served = 0
        # Every n-th part is not a JPEG (0: never): a camera's glitch.
        self.corrupt_every = 0
        # Set: the stream stops sending but keeps the connection open (a stalled camera).
        self.stalled = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._scene = SyntheticScene(320, 240, objects=2, seed=5)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/stream.mjpg"

    def start(self) -> None:
        camera = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if camera.login is not None:
                    token = base64.b64encode(":".join(camera.login).encode()).decode()
                    if self.headers.get("Authorization") != f"Basic {token}":
                        camera.refused += 1
                        self.send_response(401)
                        self.send_header("WWW-Authenticate", 'Basic realm="camera"')
                        self.end_headers()
                        return
                self.send_response(200)
                self.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={BOUNDARY}")
                self.end_headers()
                started = time.monotonic()
                try:
                    while camera._server is not None:
                        if camera.stalled.is_set():
                            time.sleep(0.05)
                            continue
                        image, _ = camera._scene.render(time.monotonic() - started)
                        ok, data = cv2.imencode(".jpg", image)
                        assert ok
                        payload = data.tobytes()
                        every = camera.corrupt_every
                        if every and camera.frames_served % every == every - 1:
                            payload = b"not a jpeg" * 10
                        self.wfile.write(
                            f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(payload)}\r\n\r\n".encode()
                        )
                        self.wfile.write(payload + b"\r\n")
                        camera.frames_served += 1
                        time.sleep(1 / camera.fps)
                except (BrokenPipeError, ConnectionResetError):
                    return

            def log_message(self, *_args: object) -> None:
                pass

        ThreadingHTTPServer.allow_reuse_address = True
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
