"""Calls to processors over gRPC: vspd.v1.Processor or the original Detector.Detect.

Calls are asynchronous (grpc futures); their completion is reported to a
callback on a gRPC thread. Addresses are used round-robin.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from vspd.config.model import BrokerConfig
from vspd.legacy import detector_pb2, detector_pb2_grpc
from vspd.v1 import frame_pb2, processor_pb2_grpc, result_pb2

# Worth trying again: the processor is down, overloaded, or was too slow this time.
TRANSIENT_CODES = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.ABORTED,
        grpc.StatusCode.CANCELLED,
    }
)


@dataclass(frozen=True)
class CallOutcome:
    result: result_pb2.Result | None
    code: grpc.StatusCode
    details: str
    seconds: float

    @property
    def transient(self) -> bool:
        return self.result is None and self.code in TRANSIENT_CODES


Done = Callable[[CallOutcome], None]


class ProcessorClient:
    def __init__(self, config: BrokerConfig, max_message_bytes: int) -> None:
        self._config = config
        options = [
            ("grpc.max_receive_message_length", max_message_bytes * 2),
            ("grpc.max_send_message_length", max_message_bytes * 2),
        ]
        credentials = None
        if config.processor_tls:
            root = Path(config.processor_ca_file).read_bytes() if config.processor_ca_file else None
            credentials = grpc.ssl_channel_credentials(root_certificates=root)
        self._channels = [
            grpc.secure_channel(address, credentials, options=options)
            if credentials is not None
            else grpc.insecure_channel(address, options=options)
            for address in config.processor_addresses
        ]
        if config.processor_api == "vspd":
            self._stubs: list[Any] = [processor_pb2_grpc.ProcessorStub(c) for c in self._channels]
        else:
            self._stubs = [detector_pb2_grpc.DetectorStub(c) for c in self._channels]
        self._next = itertools.cycle(range(len(self._stubs)))

    def call(self, frame: frame_pb2.Frame, done: Done) -> None:
        stub = self._stubs[next(self._next)]
        started = time.monotonic()
        timeout = self._config.call_timeout_s
        if self._config.processor_api == "vspd":
            future = stub.Process.future(frame, timeout=timeout)
            future.add_done_callback(lambda f: done(_vspd_outcome(f, started)))
        else:
            request = detector_pb2.ImageInfo(
                width=frame.width, height=frame.height, image=frame.image
            )
            future = stub.Detect.future(request, timeout=timeout)
            future.add_done_callback(lambda f: done(_detector_outcome(f, frame, started)))

    def close(self) -> None:
        for channel in self._channels:
            channel.close()


def _failure(future: Any, started: float) -> CallOutcome | None:
    error = future.exception()
    if error is None:
        return None
    code = error.code() if hasattr(error, "code") else grpc.StatusCode.UNKNOWN
    details = error.details() if hasattr(error, "details") else str(error)
    return CallOutcome(None, code, details or code.name, time.monotonic() - started)


def _vspd_outcome(future: Any, started: float) -> CallOutcome:
    failure = _failure(future, started)
    if failure is not None:
        return failure
    return CallOutcome(future.result(), grpc.StatusCode.OK, "", time.monotonic() - started)


def _detector_outcome(future: Any, frame: frame_pb2.Frame, started: float) -> CallOutcome:
    """The original contract's pixel boxes become a Result with normalised boxes."""
    failure = _failure(future, started)
    if failure is not None:
        return failure
    reply: detector_pb2.ImageInfoWithMeta = future.result()
    width = float(frame.width or reply.image_info.width or 1)
    height = float(frame.height or reply.image_info.height or 1)
    seconds = time.monotonic() - started
    result = result_pb2.Result(
        processor_name="detector",
        status=result_pb2.STATUS_OK,
        processing_time_ns=int(seconds * 1e9),
    )
    for item in reply.detections:
        detection = result.detections.add(label=item.category, confidence=item.confidence)
        detection.box.x_min = _unit(item.x1 / width)
        detection.box.y_min = _unit(item.y1 / height)
        detection.box.x_max = _unit(item.x2 / width)
        detection.box.y_max = _unit(item.y2 / height)
    return CallOutcome(result, grpc.StatusCode.OK, "", seconds)


def _unit(value: float) -> float:
    return min(1.0, max(0.0, value))
