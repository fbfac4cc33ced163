"""Helpers around the generated wire contract (vspd.v1): keys, identity, decoding.

Every message read from Kafka is decoded and validated here, once: whatever
passes is safe to use as a file-name component, a database key, an HTML text
or a number in arithmetic. What fails raises BadMessageError with the reason,
which callers dead-letter or count.
"""

from __future__ import annotations

import math
import re
from typing import NamedTuple

from google.protobuf.message import DecodeError

from vspd.errors import VspdError
from vspd.v1 import frame_pb2, result_pb2

Frame = frame_pb2.Frame
Result = result_pb2.Result
Detection = result_pb2.Detection
Box = result_pb2.Box
DeadLetter = result_pb2.DeadLetter
Encoding = frame_pb2.Encoding
Status = result_pb2.Status

# Camera ids become Kafka keys, systemd instance names, MQTT topics and file names.
CAMERA_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
# Session ids are UUIDs from capture; other producers may use any short token.
SESSION_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$"
_CAMERA_ID = re.compile(CAMERA_ID_PATTERN)
_SESSION_ID = re.compile(SESSION_ID_PATTERN)
MAX_SEQ = 2**63 - 1  # seq goes into SQLite INTEGER columns
MAX_SIDE_PIXELS = 16384
MAX_DETECTIONS = 4096
MAX_TEXT = 256  # labels, attribute keys
MAX_ATTRIBUTE_VALUE = 4096
MAX_ENTRIES = 256  # metadata and attribute maps


# What a Frame adds around its image, and a Result around its detections: a
# processor call's gRPC limit leaves this much room above the Kafka limit.
GRPC_HEADROOM_BYTES = 64 * 1024


def grpc_message_limit(kafka_message_max_bytes: int) -> int:
    """The size limit of a processor call, derived from kafka.message_max_bytes (one setting)."""
    return kafka_message_max_bytes + GRPC_HEADROOM_BYTES


class FrameId(NamedTuple):
    """Unique per captured frame: what consumers de-duplicate by."""

    camera_id: str
    session_id: str
    seq: int


class BadMessageError(VspdError):
    """A Kafka message that is not what its topic promises (poison input)."""


_FRAME_IMAGE_TAG = b"\x4a"  # Frame.image: field 9, length-delimited
# Frame's varint fields: (field number << 3) | wire type 0.
_SEQ_TAG, _UNIX_TAG, _MONOTONIC_TAG, _WIDTH_TAG, _HEIGHT_TAG = (
    b"\x18",
    b"\x20",
    b"\x28",
    b"\x30",
    b"\x38",
)
_UINT64 = (1 << 64) - 1  # int64 on the wire: the two's complement as a 64-bit varint


class FrameWriter:
    """A capture session's Frames, serialized without building a message per frame.

    What stays the same for a session (camera, session id, encoding) is serialized
    once; per frame only the varints and the image are joined, in one copy (protobuf
    fields may come in any order; a 1080p JPEG is ~300 KB, every frame). At 30 fps
    on a Pi, a protobuf object per frame is a measurable share of a core; the bytes are
    the same message as Frame(...).SerializeToString() (tests/test_wire.py holds them so).
    """

    def __init__(
        self,
        camera_id: str,
        session_id: str,
        encoding: frame_pb2.Encoding = frame_pb2.ENCODING_JPEG,
    ) -> None:
        self._fixed = frame_pb2.Frame(
            camera_id=camera_id, session_id=session_id, encoding=encoding
        ).SerializeToString()

    def serialize(
        self,
        *,
        seq: int,
        capture_time_unix_ns: int,
        capture_monotonic_ns: int,
        width: int,
        height: int,
        image: bytes,
        metadata: dict[str, str] | None = None,
    ) -> bytes:
        parts = [self._fixed]
        for tag, value in (
            (_SEQ_TAG, seq),
            (_UNIX_TAG, capture_time_unix_ns & _UINT64),
            (_MONOTONIC_TAG, capture_monotonic_ns & _UINT64),
            (_WIDTH_TAG, width),
            (_HEIGHT_TAG, height),
        ):
            if value:  # proto3: a zero is not written
                parts += (tag, varint(value))
        if metadata:
            parts.append(frame_pb2.Frame(metadata=metadata).SerializeToString())
        parts += (_FRAME_IMAGE_TAG, varint(len(image)), image)
        return b"".join(parts)


def varint(value: int) -> bytes:
    """A protobuf varint: a length-delimited field is its tag, varint(len(payload)), payload
    (joined once by the caller, so that a large payload is copied once)."""
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def frame_key(camera_id: str) -> bytes:
    """The Kafka key of a camera's frames and results: keeps a camera in one partition."""
    return camera_id.encode()


def frame_id(frame: frame_pb2.Frame) -> FrameId:
    return FrameId(frame.camera_id, frame.session_id, frame.seq)


def valid_camera_id(value: str) -> bool:
    return _CAMERA_ID.fullmatch(value) is not None


def _check_identity(frame: frame_pb2.Frame, where: str) -> None:
    if not frame.camera_id:
        raise BadMessageError(f"{where} has no camera_id")
    if not valid_camera_id(frame.camera_id):
        raise BadMessageError(f"{where} camera_id {_shown(frame.camera_id)} is not a valid id")
    if not frame.session_id:
        raise BadMessageError(f"{where} has no session_id")
    if _SESSION_ID.fullmatch(frame.session_id) is None:
        raise BadMessageError(f"{where} session_id {_shown(frame.session_id)} is not a valid id")
    if frame.seq > MAX_SEQ:
        raise BadMessageError(f"{where} seq {frame.seq} is over 2^63-1")
    if frame.width > MAX_SIDE_PIXELS or frame.height > MAX_SIDE_PIXELS:
        raise BadMessageError(
            f"{where} size {frame.width}x{frame.height} is over {MAX_SIDE_PIXELS} pixels a side"
        )
    if len(frame.metadata) > MAX_ENTRIES:
        raise BadMessageError(f"{where} has {len(frame.metadata)} metadata entries")


def _shown(value: str) -> str:
    """A hostile string as it may appear in a reason: short, escaped, no control characters."""
    return repr(value[:40] + ("…" if len(value) > 40 else ""))


def decode_frame(value: bytes | None) -> frame_pb2.Frame:
    """Parse and validate a frames-topic message; BadMessageError says why not."""
    if not value:
        raise BadMessageError("empty message")
    frame = frame_pb2.Frame()
    try:
        frame.ParseFromString(value)
    except DecodeError as exc:
        raise BadMessageError(f"not a vspd.v1.Frame: {exc}") from None
    _check_identity(frame, "Frame")
    if frame.encoding == frame_pb2.ENCODING_UNSPECIFIED:
        raise BadMessageError("Frame has no encoding")
    if frame.encoding not in frame_pb2.Encoding.values():
        raise BadMessageError(f"Frame has an unknown encoding {frame.encoding}")
    if not frame.image:
        raise BadMessageError("Frame has no image")
    if frame.encoding == frame_pb2.ENCODING_RAW_BGR24:
        expected = frame.width * frame.height * 3
        if len(frame.image) != expected:
            raise BadMessageError(
                f"raw BGR24 image of {frame.width}x{frame.height} needs {expected} bytes, "
                f"has {len(frame.image)}"
            )
    return frame


def encode_dead_letter(
    stage: str,
    reason: str,
    key: bytes | None,
    value: bytes,
    source: tuple[str, int, int],
    limit_bytes: int,
    time_unix_ns: int,
) -> bytes:
    """A serialized DeadLetter that fits `limit_bytes`: the original is truncated if need be,
    and the reason says so. A dead letter can then never be refused for its size."""
    topic, partition, offset = source
    letter = result_pb2.DeadLetter(
        reason=reason,
        stage=stage,
        source_topic=topic,
        source_partition=partition,
        source_offset=offset,
        original_key=(key or b"")[:1024],
        original_value=value,
        time_unix_ns=time_unix_ns,
    )
    encoded = letter.SerializeToString()
    if len(encoded) > limit_bytes:
        keep = max(0, limit_bytes - (len(encoded) - len(value)) - 256)
        letter.original_value = value[:keep]
        letter.reason = f"{reason} (original truncated from {len(value)} to {keep} bytes)"
        encoded = letter.SerializeToString()
    return encoded


def _finite_unit(value: float) -> bool:
    return math.isfinite(value) and 0.0 <= value <= 1.0


def decode_result(value: bytes | None) -> result_pb2.Result:
    """Parse and validate a results-topic message; BadMessageError says why not."""
    if not value:
        raise BadMessageError("empty message")
    result = result_pb2.Result()
    try:
        result.ParseFromString(value)
    except DecodeError as exc:
        raise BadMessageError(f"not a vspd.v1.Result: {exc}") from None
    _check_identity(result.frame, "Result frame")
    frame = result.frame
    if frame.image and frame.encoding == frame_pb2.ENCODING_RAW_BGR24:
        expected = frame.width * frame.height * 3
        if len(frame.image) != expected:
            raise BadMessageError(
                f"Result frame: raw BGR24 image of {frame.width}x{frame.height} needs "
                f"{expected} bytes, has {len(frame.image)}"
            )
    if len(result.detections) > MAX_DETECTIONS:
        raise BadMessageError(f"Result has {len(result.detections)} detections")
    for index, detection in enumerate(result.detections):
        box = detection.box
        corners = (box.x_min, box.y_min, box.x_max, box.y_max)
        if not _finite_unit(detection.confidence):
            raise BadMessageError(
                f"Result detection {index}: confidence {detection.confidence} is not in 0..1"
            )
        if not all(_finite_unit(c) for c in corners):
            raise BadMessageError(f"Result detection {index}: box {corners} is not within 0..1")
        if box.x_min > box.x_max or box.y_min > box.y_max:
            raise BadMessageError(f"Result detection {index}: box {corners} is inside out")
        if len(detection.label) > MAX_TEXT:
            raise BadMessageError(f"Result detection {index}: label over {MAX_TEXT} characters")
        _check_map(detection.attributes, f"Result detection {index}")
    _check_map(result.attributes, "Result")
    return result


def _check_map(entries: object, where: str) -> None:
    items = dict(entries)  # type: ignore[call-overload]
    if len(items) > MAX_ENTRIES:
        raise BadMessageError(f"{where} has {len(items)} attributes")
    for key, text in items.items():
        if len(key) > MAX_TEXT or len(text) > MAX_ATTRIBUTE_VALUE:
            raise BadMessageError(f"{where} attribute {_shown(key)} is too long")


# -- where a result's frame is ------------------------------------------------
# The broker names each result's frame by its Kafka position (a record header):
# recovery finds what a predecessor wrote by it, the alerts daemon reads clips.
SOURCE_HEADER = "vspd-source"


def source_header(topic: str, partition: int, offset: int) -> tuple[str, bytes]:
    return (SOURCE_HEADER, f"{topic}:{partition}:{offset}".encode())


def parse_source_header(value: bytes) -> tuple[str, int, int] | None:
    """(topic, partition, offset), or None for a value that is not one (any bytes may come)."""
    try:
        topic, partition, offset = value.decode().rsplit(":", 2)
        position = topic, int(partition), int(offset)
    except (UnicodeDecodeError, ValueError):
        return None
    return position if position[1] >= 0 and position[2] >= 0 else None


def source_of(headers: list[tuple[str, bytes | None]] | None) -> tuple[str, int, int] | None:
    for name, value in headers or ():
        if name == SOURCE_HEADER and value is not None:
            return parse_source_header(value)
    return None
