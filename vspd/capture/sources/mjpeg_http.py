"""`http://` MJPEG network cameras (multipart/x-mixed-replace): JPEGs passed through."""

from __future__ import annotations

import base64
import http.client
import re
import urllib.error
import urllib.request
from typing import Any

import structlog

from vspd.capture.errors import CorruptFrameError, SourceUnavailableError
from vspd.capture.sources.base import NETWORK_TIMEOUT_S, Captured
from vspd.config.model import CameraConfig
from vspd.images import jpeg_size
from vspd.urls import redact_url, split_login

log = structlog.get_logger(__name__)

MAX_PART_BYTES = 32 * 1024 * 1024
_BOUNDARY = re.compile(r'boundary="?([^";]+)"?', re.IGNORECASE)


class MjpegHttpSource:
    paced_by_reader = False

    def __init__(self, camera: CameraConfig) -> None:
        # The login goes in an Authorization header, never into the host name
        # or a log line: only the redacted URL is ever shown.
        self._url, username, password = split_login(camera.source_spec.target)
        if camera.username:
            username = camera.username
        if camera.password is not None:
            password = camera.password.get_secret_value()
        self._shown = redact_url(camera.source_spec.target)
        self._headers = {"User-Agent": "vspd"}
        if username or password:
            token = base64.b64encode(f"{username}:{password}".encode()).decode()
            self._headers["Authorization"] = f"Basic {token}"
        self._response: Any = None
        self._boundary = b""

    def open(self) -> None:
        request = urllib.request.Request(self._url, headers=self._headers)  # noqa: S310 - http(s) checked by config
        try:
            response = urllib.request.urlopen(request, timeout=NETWORK_TIMEOUT_S)  # noqa: S310
        except urllib.error.HTTPError as exc:
            exc.close()  # an error response is a response: its connection is ours to close
            raise SourceUnavailableError(f"cannot open {self._shown}: HTTP {exc.code}") from None
        except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
            reason = getattr(exc, "reason", exc)
            raise SourceUnavailableError(f"cannot open {self._shown}: {reason}") from None
        content_type = response.headers.get("Content-Type", "")
        match = _BOUNDARY.search(content_type)
        if "multipart" not in content_type.lower() or not match:
            response.close()
            raise SourceUnavailableError(
                f"{self._shown} is not an MJPEG stream (Content-Type {content_type!r})"
            )
        boundary = match.group(1)
        self._boundary = b"--" + boundary.removeprefix("--").encode()
        self._response = response
        log.info("source opened", source=self._shown)

    def read(self) -> Captured:
        if self._response is None:
            raise SourceUnavailableError("source is not open")
        try:
            data = self._next_part()
        except (OSError, http.client.HTTPException, ValueError) as exc:
            raise SourceUnavailableError(f"{self._shown}: {exc}") from None
        captured = Captured.now(jpeg=data)
        size = jpeg_size(data)
        if size is None:
            raise CorruptFrameError(f"{self._shown} sent a part that is not a JPEG")
        captured.width, captured.height = size
        return captured

    def _next_part(self) -> bytes:
        response = self._response
        line = b""
        while not line.startswith(self._boundary):  # skip to the next boundary
            line = response.readline(1024)
            if not line:
                raise ValueError("stream ended")
        length = None
        while True:  # part headers
            header = response.readline(4096)
            if not header:
                raise ValueError("stream ended")
            if header in (b"\r\n", b"\n"):
                break
            name, _, value = header.decode("latin-1").partition(":")
            if name.strip().lower() == "content-length":
                length = int(value.strip())
        if length is not None:
            if length > MAX_PART_BYTES:
                raise ValueError(f"part of {length} bytes is too large")
            data = bytes(response.read(length))
            if len(data) != length:
                raise ValueError("stream ended inside a frame")
            return data
        # No Content-Length: the JPEG ends at its EOI marker.
        chunks = bytearray()
        while not chunks.endswith(b"\xff\xd9"):
            byte = response.read(1)
            if not byte:
                raise ValueError("stream ended inside a frame")
            chunks += byte
            if len(chunks) > MAX_PART_BYTES:
                raise ValueError("part without end marker")
        return bytes(chunks)

    def close(self) -> None:
        if self._response is not None:
            self._response.close()
            self._response = None
