"""`file:`, `v4l2:` and `rtsp://` through OpenCV's VideoCapture.

For V4L2 the camera is asked for MJPEG and OpenCV's conversion is turned off,
so the camera's own JPEG is passed through instead of decoded and re-encoded.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from urllib.parse import urlsplit

import cv2
import numpy as np
import structlog

from vspd.capture.errors import SourceEndedError, SourceUnavailableError
from vspd.capture.sources.base import NETWORK_TIMEOUT_S, Captured
from vspd.config.model import CameraConfig
from vspd.urls import redact_url, with_login

log = structlog.get_logger(__name__)


def why_not_opened(kind: str, target: str) -> str:
    """What OpenCV does not say: a missing device, a permission, an unreachable host.

    FFmpeg's and OpenCV's own messages are silenced (they print URLs with
    passwords, and several lines per retry); this names the cause in one phrase.
    """
    if kind == "v4l2":
        device = Path(f"/dev/video{target}" if target.isdigit() else target)
        if not device.exists():
            return f"no such device {device} (is the camera plugged in? `v4l2-ctl --list-devices`)"
        if not os.access(device, os.R_OK | os.W_OK):
            return f"permission denied on {device} (the user needs the 'video' group)"
        return f"{device} is busy or not a capture device (another program using it?)"
    if kind == "file":
        return "not a video OpenCV can read"
    try:
        parts = urlsplit(target)
        host, port = parts.hostname or "", parts.port or _DEFAULT_PORTS.get(parts.scheme, 0)
    except ValueError:
        return "not a valid URL"
    if not host or not port:
        return "the stream could not be opened"
    try:
        socket.getaddrinfo(host, port)
    except OSError:
        return f"the host name {host!r} cannot be resolved"
    try:
        with socket.create_connection((host, port), timeout=3):
            pass
    except ConnectionRefusedError:
        return f"connection refused by {host}:{port} (is the camera's stream on that port?)"
    except OSError as exc:
        return f"{host}:{port} unreachable ({exc.strerror or 'timed out'})"
    return "the camera answered but the stream did not open (wrong path or login?)"


_DEFAULT_PORTS = {"rtsp": 554, "rtsps": 322, "http": 80, "https": 443}


class OpenCvSource:
    def __init__(self, camera: CameraConfig) -> None:
        self._camera = camera
        self._spec = camera.source_spec
        self.paced_by_reader = self._spec.kind == "file"
        self._capture: cv2.VideoCapture | None = None
        self._passthrough = False

    def open(self) -> None:
        spec, camera = self._spec, self._camera
        if spec.kind == "file":
            if not Path(spec.target).is_file():
                raise SourceUnavailableError(f"video file {spec.target!r} does not exist")
            capture = cv2.VideoCapture(spec.target)
        elif spec.kind == "v4l2":
            device: str | int = int(spec.target) if spec.target.isdigit() else spec.target
            capture = cv2.VideoCapture(device, cv2.CAP_V4L2)
            fourcc = str(spec.option("fourcc", "MJPG"))
            capture.set(cv2.CAP_PROP_FOURCC, cv2.VideoWriter.fourcc(*fourcc[:4]))
            capture.set(cv2.CAP_PROP_FRAME_WIDTH, camera.width)
            capture.set(cv2.CAP_PROP_FRAME_HEIGHT, camera.height)
            capture.set(cv2.CAP_PROP_FPS, camera.fps)
            if fourcc == "MJPG":
                # Raw MJPEG buffers out of read(): pass the camera's JPEG through.
                self._passthrough = bool(capture.set(cv2.CAP_PROP_CONVERT_RGB, 0))
        else:
            target = spec.target
            if camera.username or camera.password is not None:
                password = camera.password.get_secret_value() if camera.password else ""
                target = with_login(target, camera.username, password)
            # FFmpeg's own socket reads have no deadline: a camera that stalls with its
            # connection open would hang read() for ever. OpenCV's interrupt callback
            # ends opening and reading after these (RTSP goes over TCP first by default).
            timeout_ms = int(NETWORK_TIMEOUT_S * 1000)
            capture = cv2.VideoCapture(
                target,
                cv2.CAP_FFMPEG,
                [
                    cv2.CAP_PROP_OPEN_TIMEOUT_MSEC,
                    timeout_ms,
                    cv2.CAP_PROP_READ_TIMEOUT_MSEC,
                    timeout_ms,
                ],
            )
        shown = redact_url(spec.uri) if "://" in spec.uri else spec.uri
        if not capture.isOpened():
            capture.release()
            reason = why_not_opened(spec.kind, spec.target)
            raise SourceUnavailableError(f"cannot open {shown}: {reason}")
        self._capture = capture
        log.info("source opened", source=shown, passthrough=self._passthrough)

    def read(self) -> Captured:
        if self._capture is None:
            raise SourceUnavailableError("source is not open")
        ok, frame = self._capture.read()
        if not ok or frame is None:
            if self._spec.kind == "file":
                if self._spec.option("loop", False) and self._rewind():
                    ok, frame = self._capture.read()
                if not ok or frame is None:
                    raise SourceEndedError(f"end of {self._spec.target}")
            else:
                raise SourceUnavailableError(
                    f"{redact_url(self._spec.uri)} stopped delivering frames"
                )
        captured = Captured.now()
        if self._passthrough and frame.ndim <= 2 and (frame.shape[0] == 1 or frame.ndim == 1):
            captured.jpeg = np.ascontiguousarray(frame).tobytes()
        else:
            captured.image = frame
            captured.height, captured.width = frame.shape[:2]
        return captured

    def _rewind(self) -> bool:
        assert self._capture is not None  # noqa: S101 - read() checked it
        return bool(self._capture.set(cv2.CAP_PROP_POS_FRAMES, 0))

    def close(self) -> None:
        if self._capture is not None:
            self._capture.release()
            self._capture = None
