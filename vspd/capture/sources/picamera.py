"""`picamera2:N` — the Raspberry Pi camera, JPEG from the Pi's hardware encoder.

picamera2 exists only on Raspberry Pi OS (python3-picamera2 from the Raspberry
Pi archive): it is imported when this source opens, and its absence is a clear
error naming the package.
"""

from __future__ import annotations

import contextlib
import importlib
import queue
from typing import Any

import structlog

from vspd.capture.errors import SourceNotSupportedError, SourceUnavailableError
from vspd.capture.sources.base import Captured
from vspd.config.model import CameraConfig

log = structlog.get_logger(__name__)
_FRAME_WAIT_S = 5.0


def import_picamera2() -> Any:
    try:
        return importlib.import_module("picamera2")
    except ImportError as exc:
        raise SourceNotSupportedError(
            "source picamera2: needs the picamera2 library, which exists only on Raspberry Pi OS "
            f"(apt install python3-picamera2); here: {exc}"
        ) from None


class Picamera2Source:
    paced_by_reader = False

    def __init__(self, camera: CameraConfig) -> None:
        self._camera = camera
        self._index = int(camera.source_spec.target)
        self._device: Any = None
        self._frames: queue.Queue[Captured] = queue.Queue(maxsize=4)

    def open(self) -> None:
        picamera2 = import_picamera2()
        camera = self._camera
        try:
            device = picamera2.Picamera2(self._index)
            config = device.create_video_configuration(
                main={"size": (camera.width, camera.height), "format": "YUV420"},
                controls={"FrameRate": camera.fps},
            )
            device.configure(config)
            encoders = importlib.import_module("picamera2.encoders")
            outputs = importlib.import_module("picamera2.outputs")
            # MJPEGEncoder uses the Pi's hardware JPEG block where the model has one.
            encoder = encoders.MJPEGEncoder()
            device.start_recording(encoder, _QueueOutput(outputs.Output, self._frames, camera))
        except Exception as exc:  # noqa: BLE001 - libcamera raises many kinds
            raise SourceUnavailableError(f"picamera2:{self._index} cannot start: {exc}") from None
        self._device = device
        log.info("source opened", source=f"picamera2:{self._index}", encoder="MJPEGEncoder")

    def read(self) -> Captured:
        try:
            return self._frames.get(timeout=_FRAME_WAIT_S)
        except queue.Empty:
            raise SourceUnavailableError(
                f"picamera2:{self._index} delivered nothing for {_FRAME_WAIT_S}s"
            ) from None

    def close(self) -> None:
        if self._device is not None:
            try:
                self._device.stop_recording()
                self._device.close()
            finally:
                self._device = None


def _QueueOutput(base: type, frames: queue.Queue[Captured], camera: CameraConfig) -> Any:  # noqa: N802
    """An picamera2 Output that hands each encoded JPEG to the reader thread."""

    class QueueOutput(base):  # type: ignore[misc]
        def outputframe(self, frame: bytes, *_args: Any, **_kwargs: Any) -> None:
            captured = Captured.now(jpeg=bytes(frame), width=camera.width, height=camera.height)
            # The reader takes frames at once; if it ever falls behind, the
            # camera must not wait for it.
            with contextlib.suppress(queue.Full):
                frames.put_nowait(captured)

    return QueueOutput()
