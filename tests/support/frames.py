"""Frames as capture would write them, for feeding the broker directly."""

from __future__ import annotations

import time
import uuid
from collections import defaultdict
from typing import Any

import cv2
import numpy as np
from confluent_kafka import Producer

from tests.support.kafka import Record
from vspd import wire
from vspd.capture.sources.synthetic import (
    TRUTH_METADATA_KEY,
    SyntheticScene,
    boxes_to_metadata,
)
from vspd.v1 import frame_pb2

_TINY_JPEG: bytes | None = None


def tiny_jpeg() -> bytes:
    global _TINY_JPEG  # noqa: PLW0603 - a cache of one constant
    if _TINY_JPEG is None:
        ok, data = cv2.imencode(".jpg", np.full((48, 64, 3), 90, np.uint8))
        assert ok
        _TINY_JPEG = data.tobytes()
    return _TINY_JPEG


def frames_for(
    cameras: list[str], count: int, start: int = 0, session: str | None = None
) -> list[tuple[bytes, bytes]]:
    """`count` frames per camera, interleaved as several cameras would write them."""
    session = session or str(uuid.uuid4())
    messages = []
    for seq in range(start, start + count):
        for camera in cameras:
            frame = frame_pb2.Frame(
                camera_id=camera,
                session_id=session,
                seq=seq,
                capture_time_unix_ns=time.time_ns(),
                capture_monotonic_ns=time.monotonic_ns(),
                width=64,
                height=48,
                encoding=frame_pb2.ENCODING_JPEG,
                image=tiny_jpeg(),
            )
            messages.append((wire.frame_key(camera), frame.SerializeToString()))
    return messages


def results_by_camera(records: list[Record]) -> dict[str, list[int]]:
    """Raw seq sequence per camera, in the order the results topic holds them."""
    cameras: dict[str, list[int]] = defaultdict(list)
    for record in sorted(records, key=lambda r: (r.partition, r.offset)):
        result = wire.decode_result(record.value)
        cameras[result.frame.camera_id].append(result.frame.seq)
    return cameras


def first_occurrences(seqs: list[int]) -> list[int]:
    seen: set[int] = set()
    ordered = []
    for seq in seqs:
        if seq not in seen:
            seen.add(seq)
            ordered.append(seq)
    return ordered


def scene_frames(
    cameras: list[str], count: int, fps: float = 15.0, objects: int = 2
) -> list[tuple[bytes, bytes]]:
    """Frames of moving objects whose true boxes ride in the metadata (the synthetic source's
    key), capture times 1/fps apart; the image is a placeholder (the truth plug-in reads none)."""
    start = time.time_ns()
    scenes = {
        camera: SyntheticScene(64, 48, objects=objects, seed=index + 1, noise=False)
        for index, camera in enumerate(cameras)
    }
    session = str(uuid.uuid4())
    messages = []
    for seq in range(count):
        for camera in cameras:
            t_ns = start + int(seq * 1e9 / fps)
            frame = frame_pb2.Frame(
                camera_id=camera,
                session_id=session,
                seq=seq,
                capture_time_unix_ns=t_ns,
                capture_monotonic_ns=t_ns,
                width=64,
                height=48,
                encoding=frame_pb2.ENCODING_JPEG,
                image=tiny_jpeg(),
            )
            boxes = scenes[camera].boxes((t_ns - start) / 1e9)
            frame.metadata[TRUTH_METADATA_KEY] = boxes_to_metadata(boxes)
            messages.append((wire.frame_key(camera), frame.SerializeToString()))
    return messages


def undecodable_frame(camera: str, seq: int, width: int = 64, height: int = 48) -> frame_pb2.Frame:
    """A valid Frame whose image is not the JPEG it says it is: the processor refuses it."""
    return frame_pb2.Frame(
        camera_id=camera,
        session_id="s",
        seq=seq,
        width=width,
        height=height,
        encoding=frame_pb2.ENCODING_JPEG,
        image=b"not a jpeg",
    )


def camera_frame(camera: str, session: str, seq: int, at_ns: int) -> tuple[bytes, bytes]:
    """(key, value) of one frame captured at `at_ns`, as a camera writes it."""
    frame = frame_pb2.Frame(
        camera_id=camera,
        session_id=session,
        seq=seq,
        capture_time_unix_ns=at_ns,
        capture_monotonic_ns=at_ns,
        width=64,
        height=48,
        encoding=frame_pb2.ENCODING_JPEG,
        image=tiny_jpeg(),
    )
    return wire.frame_key(camera), frame.SerializeToString()


def produce_frames(
    bootstrap: str, topic: str, frames: list[frame_pb2.Frame]
) -> dict[tuple[str, int], tuple[int, int]]:
    """Write frames as capture does (keyed by camera, stamped with their capture time);
    returns (camera, seq) -> (partition, offset) where Kafka put each."""
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
    positions: dict[tuple[str, int], tuple[int, int]] = {}
    for item in frames:

        def on_delivery(error: object, message: Any, frame: frame_pb2.Frame = item) -> None:
            assert error is None, error
            positions[(frame.camera_id, frame.seq)] = (message.partition(), message.offset())

        producer.produce(
            topic,
            value=item.SerializeToString(),
            key=wire.frame_key(item.camera_id),
            on_delivery=on_delivery,
            timestamp=item.capture_time_unix_ns // 1_000_000,
        )
    assert producer.flush(30) == 0
    return positions
