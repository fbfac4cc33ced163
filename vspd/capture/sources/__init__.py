"""Camera sources. Each delivers captured frames, stamped at the moment of capture."""

from __future__ import annotations

from vspd.capture.sources.base import Captured, FrameSource
from vspd.config.model import CameraConfig


def open_source(camera: CameraConfig) -> FrameSource:
    """The source for a camera's URI; not yet opened (call .open())."""
    spec = camera.source_spec
    if spec.kind == "synthetic":
        from vspd.capture.sources.synthetic_source import SyntheticSource

        return SyntheticSource(camera)
    if spec.kind == "http":
        from vspd.capture.sources.mjpeg_http import MjpegHttpSource

        return MjpegHttpSource(camera)
    if spec.kind == "picamera2":
        from vspd.capture.sources.picamera import Picamera2Source

        return Picamera2Source(camera)
    from vspd.capture.sources.opencv import OpenCvSource

    return OpenCvSource(camera)


__all__ = ["Captured", "FrameSource", "open_source"]
