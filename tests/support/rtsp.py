"""A real RTSP camera for the tests: GStreamer's RTSP server (Debian's gst-rtsp-server) on loopback.

The server runs in a process of its own under Debian's /usr/bin/python3, which has the
GObject bindings (python3-gi, gir1.2-gst-rtsp-server-1.0); the tests' virtual environment
does not. It streams H.264 (x264, what network cameras send) over RTP; the capture daemon
reads it with OpenCV's FFmpeg like any camera. Stopping the process is a camera that goes
away; SIGSTOP is a camera that stalls with its connection open.

Run directly: /usr/bin/python3 tests/support/rtsp.py PORT  (prints "serving" when up)
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

SYSTEM_PYTHON = "/usr/bin/python3"
PIPELINE = (
    "( videotestsrc is-live=true pattern=ball ! video/x-raw,width=320,height=240,framerate=15/1"
    " ! x264enc tune=zerolatency speed-preset=ultrafast key-int-max=15"
    " ! rtph264pay name=pay0 pt=96 config-interval=1 )"
)


class RtspCamera:
    def __init__(self, port: int) -> None:
        self.port = port
        self.starts = 0
        self._process: subprocess.Popen[str] | None = None

    @property
    def url(self) -> str:
        return f"rtsp://127.0.0.1:{self.port}/camera"

    def start(self) -> None:
        self._process = subprocess.Popen(
            [SYSTEM_PYTHON, str(Path(__file__).resolve()), str(self.port)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={"PATH": "/usr/bin:/bin", "GST_DEBUG": "0"},
        )
        assert self._process.stdout is not None
        line = self._process.stdout.readline()  # an event, not a sleep: the server says so
        if line.strip() != "serving":
            self.stop()
            raise RuntimeError(f"the RTSP server did not start: {line}")
        self.starts += 1

    def stall(self) -> None:
        """The camera stops sending and keeps every connection open."""
        assert self._process is not None
        self._process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self._process is not None
        self._process.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        if self._process is None:
            return
        self._process.send_signal(signal.SIGCONT)
        self._process.kill()
        self._process.wait()
        if self._process.stdout is not None:
            self._process.stdout.close()
        self._process = None


def serve(port: int) -> None:
    import gi  # Debian's system Python has it; the virtual environment does not

    gi.require_version("Gst", "1.0")
    gi.require_version("GstRtspServer", "1.0")
    from gi.repository import GLib, Gst, GstRtspServer

    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(port))
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(PIPELINE)
    factory.set_shared(True)  # one encoder for every client, like a camera
    server.get_mount_points().add_factory("/camera", factory)
    if server.attach(None) == 0:
        print(f"cannot listen on 127.0.0.1:{port}", flush=True)
        sys.exit(1)
    print("serving", flush=True)
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    GLib.MainLoop().run()


if __name__ == "__main__":
    serve(int(sys.argv[1]))
