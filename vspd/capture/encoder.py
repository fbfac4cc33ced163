"""Turning what a source captured into the frame's JPEG.

A camera's own JPEG at the configured size is passed through untouched (no
decode, no copy beyond the message); pixels, or a JPEG of another size, are
(decoded,) resized and encoded at `jpeg_quality`. OpenCV is imported on the
first frame that needs it: a pass-through camera never loads it (tens of MB
of a Pi's memory).
"""

from __future__ import annotations

from vspd.capture.errors import CaptureError
from vspd.capture.sources.base import Captured
from vspd.config.model import CameraConfig
from vspd.images import declares_at_most


class JpegEncoder:
    def __init__(self, camera: CameraConfig) -> None:
        self.camera = camera

    def passes_through(self, captured: Captured) -> bool:
        size = (captured.width, captured.height)
        return captured.jpeg is not None and size in (
            (self.camera.width, self.camera.height),
            (0, 0),
        )

    def encode(self, captured: Captured) -> tuple[bytes, int, int]:
        """(JPEG, width, height) at the configured size; CaptureError for an unusable frame."""
        camera = self.camera
        # On first use (see the module's docstring).
        import cv2
        import numpy as np

        image = captured.image
        if captured.jpeg is not None:  # the camera's JPEG is not the configured size
            if not declares_at_most(captured.jpeg):
                raise CaptureError("the camera's JPEG declares too many pixels to decode")
            image = cv2.imdecode(np.frombuffer(captured.jpeg, np.uint8), cv2.IMREAD_COLOR)
            if image is None:
                raise CaptureError("the camera sent a JPEG that does not decode")
        if image is None:
            raise CaptureError("source delivered neither pixels nor JPEG")
        try:
            if image.shape[1] != camera.width or image.shape[0] != camera.height:
                image = cv2.resize(
                    image, (camera.width, camera.height), interpolation=cv2.INTER_AREA
                )
            ok, encoded = cv2.imencode(
                ".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, camera.jpeg_quality]
            )
        except cv2.error as exc:
            raise CaptureError(f"cannot encode the frame: {exc}") from None
        if not ok:
            raise CaptureError("JPEG encoding failed")
        return encoded.tobytes(), camera.width, camera.height
