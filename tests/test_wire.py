"""The wire contract through a real Kafka-protocol broker, and poison-input detection."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from tests.support.kafka import at_least, produce, read_topic
from vspd import wire
from vspd.legacy import detector_pb2
from vspd.v1 import frame_pb2, result_pb2


def sample_frame(seq: int = 7) -> frame_pb2.Frame:
    return frame_pb2.Frame(
        camera_id="porch",
        session_id="0c6d4f0e-2f55-4c1e-9c55-2d8b7f3f2a11",
        seq=seq,
        capture_time_unix_ns=time.time_ns(),
        capture_monotonic_ns=time.monotonic_ns(),
        width=640,
        height=480,
        encoding=frame_pb2.ENCODING_JPEG,
        image=b"\xff\xd8" + bytes(range(256)) * 400 + b"\xff\xd9",
        metadata={"source": "synthetic:", "note": "ünïcode"},
    )


def test_frame_and_result_round_trip_through_the_broker(
    bootstrap: str, fresh_topics: Callable[..., dict[str, str]]
) -> None:
    topics = fresh_topics(partitions=2)
    frame = sample_frame()
    result = result_pb2.Result(
        processor_name="motion",
        processor_version="1",
        status=result_pb2.STATUS_OK,
        processing_time_ns=1234,
        attributes={"motion.fraction": "0.1"},
    )
    result.frame.CopyFrom(frame)
    detection = result.detections.add(label="person", confidence=0.875, track_id=3)
    detection.box.x_min, detection.box.y_min, detection.box.x_max, detection.box.y_max = (
        0.1,
        0.2,
        0.3,
        0.4,
    )
    skipped = result_pb2.Result(status=result_pb2.STATUS_SKIPPED, status_reason="older than 2s")
    skipped.frame.CopyFrom(sample_frame(8))

    produce(
        bootstrap,
        topics["frames_topic"],
        [(wire.frame_key(frame.camera_id), frame.SerializeToString())],
    )
    produce(
        bootstrap,
        topics["results_topic"],
        [(b"porch", result.SerializeToString()), (b"porch", skipped.SerializeToString())],
    )

    (frame_record,) = read_topic(bootstrap, topics["frames_topic"], at_least(1))
    assert frame_record.key == b"porch"
    assert wire.decode_frame(frame_record.value) == frame
    results = read_topic(bootstrap, topics["results_topic"], at_least(2))
    decoded = [wire.decode_result(record.value) for record in results]
    assert decoded == [result, skipped]
    assert decoded[0].detections[0].HasField("track_id")
    assert not decoded[1].detections
    assert wire.frame_id(decoded[1].frame) == ("porch", frame.session_id, 8)


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (b"", "empty message"),
        (b"\xff\xff\xff\xff", "not a vspd.v1.Frame"),
        (b"hello world, not a frame", "not a vspd.v1.Frame"),
        (
            frame_pb2.Frame(session_id="s", encoding=1, image=b"x").SerializeToString(),
            "no camera_id",
        ),
        (
            frame_pb2.Frame(camera_id="c", encoding=1, image=b"x").SerializeToString(),
            "no session_id",
        ),
        (
            frame_pb2.Frame(camera_id="c", session_id="s", image=b"x").SerializeToString(),
            "no encoding",
        ),
        (
            frame_pb2.Frame(camera_id="c", session_id="s", encoding=1).SerializeToString(),
            "no image",
        ),
    ],
)
def test_poison_frames_are_recognised_with_a_reason(value: bytes, reason: str) -> None:
    with pytest.raises(wire.BadMessageError, match=reason):
        wire.decode_frame(value)


def test_original_detector_contract_keeps_its_field_numbers() -> None:
    # Byte-level check against the original design's numbering.
    info = detector_pb2.ImageInfo(width=2, height=3, image=b"ab")
    assert info.SerializeToString() == b"\x08\x02\x10\x03\x1a\x02ab"
    detection = detector_pb2.Detection(category="c", confidence=0.5, x1=1, y1=2, x2=3, y2=4)
    fields = {field.name: field.number for field in detection.DESCRIPTOR.fields}
    assert fields == {"category": 1, "confidence": 2, "x1": 3, "y1": 4, "x2": 5, "y2": 6}
    assert (
        detection.DESCRIPTOR.fields_by_name["confidence"].type
        == detection.DESCRIPTOR.fields_by_name["confidence"].TYPE_DOUBLE
    )
    assert detector_pb2.DESCRIPTOR.package == ""
    assert detector_pb2.DESCRIPTOR.services_by_name["Detector"].full_name == "Detector"


@pytest.mark.parametrize(
    "fields",
    [
        {"seq": 7, "capture_time_unix_ns": 1, "width": 64, "height": 48, "metadata": {"k": "v"}},
        # zeros are not written (proto3); a negative int64 is ten bytes on the wire
        {"seq": 0, "capture_time_unix_ns": -5, "capture_monotonic_ns": 0, "width": 0, "height": 0},
        {
            "seq": 2**63 - 1,
            "capture_time_unix_ns": 2**63 - 1,
            "capture_monotonic_ns": 2**62,
            "width": 7680,
            "height": 4320,
        },
    ],
)
def test_the_capture_frame_writer_makes_the_same_message_as_protobuf(fields: dict) -> None:
    image = bytes(range(256)) * 1200  # long enough for a multi-byte length
    fields = {"capture_monotonic_ns": 3, **fields}
    expected = frame_pb2.Frame(
        camera_id="door", session_id="s", encoding=frame_pb2.ENCODING_JPEG, image=image, **fields
    )
    writer = wire.FrameWriter("door", "s")
    written = writer.serialize(**{"metadata": None, **fields}, image=image)
    assert wire.decode_frame(written) == expected
    assert frame_pb2.Frame.FromString(written) == expected
