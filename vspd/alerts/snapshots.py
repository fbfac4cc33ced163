"""Snapshots: the triggering frame with its boxes drawn, saved as JPEG."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from vspd.images import declares_at_most
from vspd.runtime.paths import inside, safe_name
from vspd.v1 import frame_pb2, result_pb2

_COLORS = [(0, 200, 255), (60, 220, 60), (255, 120, 0), (200, 60, 255), (0, 80, 255)]


def draw(result: result_pb2.Result, highlight: set[str] | None = None) -> bytes | None:
    """JPEG of the frame with boxes and labels; None when the result carries no image."""
    frame = result.frame
    if not frame.image:
        return None
    if frame.encoding == frame_pb2.ENCODING_RAW_BGR24:
        image = np.frombuffer(frame.image, np.uint8).reshape(frame.height, frame.width, 3).copy()
    else:
        if not declares_at_most(frame.image):
            return None  # a decoding bomb: no snapshot rather than gigabytes
        decoded = cv2.imdecode(np.frombuffer(frame.image, np.uint8), cv2.IMREAD_COLOR)
        if decoded is None:
            return None
        image = decoded
    height, width = image.shape[:2]
    labels = sorted({d.label for d in result.detections})
    thickness = max(1, width // 320)
    font_scale = min(1.0, max(0.25, width / 1280))
    for detection in result.detections:
        if highlight and detection.label not in highlight:
            continue
        color = _COLORS[labels.index(detection.label) % len(_COLORS)]
        box = detection.box
        p1 = (int(box.x_min * width), int(box.y_min * height))
        p2 = (int(box.x_max * width), int(box.y_max * height))
        cv2.rectangle(image, p1, p2, color, thickness)
        track = f" #{detection.track_id}" if detection.HasField("track_id") else ""
        text = f"{detection.label}{track} {detection.confidence:.0%}"
        cv2.putText(
            image,
            text,
            (p1[0] + 2, max(12, p1[1] - 4)),
            cv2.FONT_HERSHEY_SIMPLEX,
            font_scale,
            color,
            1,
            cv2.LINE_AA,
        )
    ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 85])
    return data.tobytes() if ok else None


def thumbnail(jpeg: bytes, width: int = 240) -> bytes:
    image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        return jpeg
    scale = width / image.shape[1]
    small = cv2.resize(
        image, (width, max(1, int(image.shape[0] * scale))), interpolation=cv2.INTER_AREA
    )
    ok, data = cv2.imencode(".jpg", small, [cv2.IMWRITE_JPEG_QUALITY, 75])
    return data.tobytes() if ok else jpeg


def relative_path(camera: str, key: str) -> str:
    """Where an event's snapshot lives, below the state directory's snapshots/."""
    return f"{safe_name(camera)}/{safe_name(key.replace('/', '_'))}.jpg"


def save(directory: Path, camera: str, key: str, jpeg: bytes) -> str:
    """Write atomically; returns the path relative to `directory` (always inside it)."""
    relative = Path("snapshots") / relative_path(camera, key)
    path = inside(directory, *relative.parts)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    temporary.write_bytes(jpeg)
    temporary.replace(path)
    return str(relative)
