"""Stand-in for picamera2.encoders."""

from __future__ import annotations


class MJPEGEncoder:
    """The hardware JPEG block (Pi 0-4)."""

    def __init__(self, bitrate: int | None = None) -> None:
        self.bitrate = bitrate


class JpegEncoder:
    """simplejpeg, in software."""

    def __init__(self, num_threads: int = 4, q: int | None = None) -> None:
        self.num_threads = num_threads
        self.q = q
