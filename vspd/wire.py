"""Helpers around the generated wire contract (vspd.v1): keys, identity, decoding."""

from __future__ import annotations

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


class FrameId(NamedTuple):
    """Unique per captured frame: what consumers de-duplicate by."""

    camera_id: str
    session_id: str
    seq: int


class BadMessageError(VspdError):
    """A Kafka message that is not what its topic promises (poison input)."""


def frame_key(camera_id: str) -> bytes:
    """The Kafka key of a camera's frames and results: keeps a camera in one partition."""
    return camera_id.encode()


def frame_id(frame: frame_pb2.Frame) -> FrameId:
    return FrameId(frame.camera_id, frame.session_id, frame.seq)


def decode_frame(value: bytes | None) -> frame_pb2.Frame:
    """Parse and sanity-check a frames-topic message; BadMessageError says why not."""
    if not value:
        raise BadMessageError("empty message")
    frame = frame_pb2.Frame()
    try:
        frame.ParseFromString(value)
    except DecodeError as exc:
        raise BadMessageError(f"not a vspd.v1.Frame: {exc}") from None
    if not frame.camera_id:
        raise BadMessageError("Frame has no camera_id")
    if not frame.session_id:
        raise BadMessageError("Frame has no session_id")
    if frame.encoding == frame_pb2.ENCODING_UNSPECIFIED:
        raise BadMessageError("Frame has no encoding")
    if not frame.image:
        raise BadMessageError("Frame has no image")
    return frame


def decode_result(value: bytes | None) -> result_pb2.Result:
    if not value:
        raise BadMessageError("empty message")
    result = result_pb2.Result()
    try:
        result.ParseFromString(value)
    except DecodeError as exc:
        raise BadMessageError(f"not a vspd.v1.Result: {exc}") from None
    if not result.frame.camera_id:
        raise BadMessageError("Result has no frame.camera_id")
    return result
