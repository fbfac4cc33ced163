"""`vspd processor --try IMAGE`: the configured processor, once, on one image file.

The quickest way to see what a model finds before it runs in the pipeline: the
same loading (plug-in path, built-ins), the same FrameView, the same checks of
the image as a served call; the detections are printed and drawn.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import cv2

from vspd.config import VspdConfig
from vspd.images import jpeg_size, png_size
from vspd.processor.builtins import load_builtin
from vspd.processor.errors import ProcessorError
from vspd.processor.plugin import (
    CameraStates,
    FrameView,
    LoadedPlugin,
    load_plugin,
    normalise_output,
)
from vspd.v1 import frame_pb2

MAX_IMAGE_BYTES = 64 * 1024 * 1024
TRY_CAMERA = "try"


def boxes_path(image: Path) -> Path:
    return image.with_name(f"{image.name}.boxes.jpg")


def run_once(config: VspdConfig, image: Path) -> list[str]:
    """The lines to print; raises ProcessorError with one clear line."""
    data = _read(image)
    if jpeg_size(data) is not None:
        encoding, (width, height) = frame_pb2.ENCODING_JPEG, jpeg_size(data) or (0, 0)
    elif png_size(data) is not None:
        encoding, (width, height) = frame_pb2.ENCODING_PNG, png_size(data) or (0, 0)
    else:
        raise ProcessorError(f"{image}: not a JPEG or PNG image")
    settings = config.processor
    plugin = _load(config)
    frame = frame_pb2.Frame(
        camera_id=TRY_CAMERA,
        session_id="try",
        seq=0,
        width=width,
        height=height,
        encoding=encoding,
        image=data,
        capture_time_unix_ns=time.time_ns(),
    )
    view = FrameView(frame, CameraStates())
    started = time.perf_counter()
    try:
        returned = plugin.function(view)
        if plugin.is_async:
            returned = asyncio.run(returned)
        output = normalise_output(returned)
    except ProcessorError:
        raise
    except Exception as exc:  # noqa: BLE001 - the user's code failed: say how, in one line
        raise ProcessorError(
            f"{plugin.name} failed on {image}: {type(exc).__name__}: {exc}"
        ) from None
    elapsed_ms = (time.perf_counter() - started) * 1000
    lines = [f"{plugin.name}: {len(output.detections)} detection(s) in {elapsed_ms:.0f} ms"]
    if not settings.plugin and settings.builtin == "motion":
        lines.append("(motion compares a camera's frames: one image alone shows no motion)")
    picture = view.image.copy()
    for detection in output.detections:
        x1, y1, x2, y2 = detection.box
        track = f" track {detection.track_id}" if detection.track_id is not None else ""
        lines.append(
            f"  {detection.label} {detection.confidence:.2f} "
            f"box ({x1:.3f}, {y1:.3f})-({x2:.3f}, {y2:.3f}){track}"
        )
        p1 = (round(x1 * width), round(y1 * height))
        p2 = (round(x2 * width), round(y2 * height))
        cv2.rectangle(picture, p1, p2, (0, 0, 255), 2)
        cv2.putText(picture, detection.label, (p1[0], max(12, p1[1] - 4)), 0, 0.5, (0, 0, 255), 1)
    for key, value in output.attributes.items():
        lines.append(f"  attribute {key} = {value}")
    out = boxes_path(image)
    ok, encoded = cv2.imencode(".jpg", picture)
    if not ok:
        raise ProcessorError(f"cannot write {out}: the image could not be encoded")
    try:
        out.write_bytes(encoded.tobytes())
    except OSError as exc:
        raise ProcessorError(f"cannot write {out}: {exc.strerror or exc}") from None
    lines.append(f"wrote {out}")
    return lines


def _read(image: Path) -> bytes:
    try:
        if not image.is_file():
            raise ProcessorError(
                f"{image}: no such file" if not image.exists() else f"{image}: not a file"
            )
        with image.open("rb") as handle:
            data = handle.read(MAX_IMAGE_BYTES + 1)
    except OSError as exc:
        raise ProcessorError(f"{image}: cannot be read: {exc.strerror}") from None
    if len(data) > MAX_IMAGE_BYTES:
        raise ProcessorError(f"{image}: larger than {MAX_IMAGE_BYTES} bytes")
    return data


def _load(config: VspdConfig) -> LoadedPlugin:
    settings = config.processor
    if settings.plugin:
        return load_plugin(settings.plugin, settings.plugin_path)
    return load_builtin(settings)
