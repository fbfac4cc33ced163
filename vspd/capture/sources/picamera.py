"""`picamera2:N` — the Raspberry Pi camera, JPEG-encoded on the Pi, per board.

picamera2 exists only on Raspberry Pi OS (python3-picamera2 from the Raspberry
Pi archive): it is imported when this source opens, and its absence is a clear
error naming the package.

Which JPEG encoder (`[[cameras]] picamera_encoder`, "auto" by default):
- Pi 0-4 (VideoCore IV/VI ISP, picamera2's Platform.VC4) have a hardware JPEG
  block: `MJPEGEncoder` uses it;
- a Pi 5 (the PiSP, Platform.PISP) has none: picamera2's `MJPEGEncoder` falls
  back to libav there, and `JpegEncoder` (simplejpeg, several threads) is the
  efficient one, at the camera's `jpeg_quality`.
The board is picamera2's own answer (`picamera2.platform.get_platform()`),
else the device tree's model (/proc/device-tree/model).

Which stream: by default the ISP scales the sensor to `width`x`height` in
"main", so the encoder only sees frames the size the processor needs. With
`picamera_lores = true`, "main" runs at the sensor's full resolution (the
whole field of view: small main sizes may pick a cropped sensor mode) and the
`lores` stream, scaled by the ISP to `width`x`height` (YUV420, what both
boards accept), is the one encoded.
"""

from __future__ import annotations

import contextlib
import importlib
import queue
from pathlib import Path
from typing import Any

import structlog

from vspd.capture.errors import SourceNotSupportedError, SourceUnavailableError
from vspd.capture.sources.base import Captured
from vspd.config.model import CameraConfig

log = structlog.get_logger(__name__)
_FRAME_WAIT_S = 5.0
DEVICE_TREE_MODEL = Path("/proc/device-tree/model")
# Boards whose ISP is the PiSP (no hardware JPEG): the Pi 5 family.
_PISP_MODELS = ("Raspberry Pi 5", "Raspberry Pi 500", "Raspberry Pi Compute Module 5")


def board_has_hardware_jpeg(picamera2: Any, model_file: Path = DEVICE_TREE_MODEL) -> bool:
    """True on Pi 0-4 (VC4), False on a Pi 5 (PiSP) or when the board cannot be told."""
    try:
        platform = importlib.import_module("picamera2.platform")
        return bool(platform.get_platform() == platform.Platform.VC4)
    except (ImportError, AttributeError):
        pass
    try:
        model = model_file.read_bytes().rstrip(b"\0").decode(errors="replace")
    except OSError:
        return False  # a software encoder works everywhere
    if not model.startswith("Raspberry Pi"):
        return False
    return not model.startswith(_PISP_MODELS)


def choose_encoder(setting: str, hardware_jpeg: bool) -> str:
    """ "mjpeg" (the hardware block) or "jpeg" (simplejpeg); the config's word wins."""
    if setting != "auto":
        return setting
    return "mjpeg" if hardware_jpeg else "jpeg"


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
        size = (camera.width, camera.height)
        kind = choose_encoder(camera.picamera_encoder, board_has_hardware_jpeg(picamera2))
        stream = "lores" if camera.picamera_lores else "main"
        try:
            device = picamera2.Picamera2(self._index)
            if stream == "lores":
                config = device.create_video_configuration(
                    main={"size": device.sensor_resolution, "format": "YUV420"},
                    lores={"size": size, "format": "YUV420"},
                    encode="lores",
                    controls={"FrameRate": camera.fps},
                )
            else:
                config = device.create_video_configuration(
                    main={"size": size, "format": "YUV420"}, controls={"FrameRate": camera.fps}
                )
            device.configure(config)
            encoders = importlib.import_module("picamera2.encoders")
            outputs = importlib.import_module("picamera2.outputs")
            if kind == "mjpeg":
                encoder = encoders.MJPEGEncoder()
            else:
                encoder = encoders.JpegEncoder(q=camera.jpeg_quality)
            output = _QueueOutput(outputs.Output, self._frames, camera)
            device.start_recording(encoder, output, name=stream)
        except Exception as exc:  # noqa: BLE001 - libcamera raises many kinds
            raise SourceUnavailableError(f"picamera2:{self._index} cannot start: {exc}") from None
        self._device = device
        log.info(
            "source opened",
            source=f"picamera2:{self._index}",
            encoder=type(encoder).__name__,
            stream=stream,
            size=f"{size[0]}x{size[1]}",
        )

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
