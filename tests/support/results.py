"""Results as the broker would write them, for feeding the alerts daemon directly."""

from __future__ import annotations

import time
import uuid

from tests.support.frames import tiny_jpeg
from vspd import wire
from vspd.v1 import result_pb2

SECOND = 1_000_000_000


def result(
    camera: str,
    seq: int,
    detections: list[tuple[str, float, tuple[float, float, float, float]]] = (),  # type: ignore[assignment]
    session: str = "session-1",
    at_ns: int | None = None,
    status: int = result_pb2.STATUS_OK,
) -> result_pb2.Result:
    item = result_pb2.Result(
        processor_name="test", status=status, result_time_unix_ns=time.time_ns()
    )
    frame = item.frame
    frame.camera_id, frame.session_id, frame.seq = camera, session, seq
    frame.capture_time_unix_ns = at_ns if at_ns is not None else time.time_ns()
    frame.width, frame.height, frame.encoding, frame.image = 64, 48, 1, tiny_jpeg()
    for label, confidence, box in detections:
        detection = item.detections.add(label=label, confidence=confidence)
        detection.box.x_min, detection.box.y_min, detection.box.x_max, detection.box.y_max = box
    return item


def messages(results: list[result_pb2.Result]) -> list[tuple[bytes | None, bytes]]:
    return [(wire.frame_key(r.frame.camera_id), r.SerializeToString()) for r in results]


def new_session() -> str:
    return str(uuid.uuid4())
