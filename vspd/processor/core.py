"""From a Frame to a Result through the plug-in, with errors mapped to gRPC codes.

Shared by the thread and asyncio servers and by both contracts (vspd.v1.Processor
and the original Detector.Detect).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import cv2
import grpc
import numpy as np
import structlog

from vspd.legacy import detector_pb2
from vspd.processor.errors import (
    DeadlineExpiredError,
    InvalidFrameError,
    NotReadyError,
    ProcessorError,
)
from vspd.processor.metrics import ProcessorMetrics
from vspd.processor.plugin import (
    CameraStates,
    FrameView,
    LoadedPlugin,
    Output,
    normalise_output,
)
from vspd.v1 import frame_pb2, processor_pb2, result_pb2

log = structlog.get_logger(__name__)


class ProcessingCore:
    def __init__(self, metrics: ProcessorMetrics) -> None:
        self.metrics = metrics
        self.plugin: LoadedPlugin | None = None
        self.states = CameraStates()
        self.ok = 0
        self.failed = 0
        self.in_flight = 0
        # ProcessBatch's limits, as Describe tells them (set by the server).
        self.max_batch = 1
        self.max_batch_bytes = 0

    def set_plugin(self, plugin: LoadedPlugin) -> None:
        self.plugin = plugin

    def close(self) -> None:
        """Nothing to release: plug-ins run on the server's loop and pool."""

    # The asyncio path (grpc.aio server); sync plug-ins run in its executor.
    async def call_async(
        self, view: FrameView, run_sync: Callable[..., Any], deadline: float | None
    ) -> Output:
        plugin = self._ready()
        if plugin.is_async:
            return normalise_output(await plugin.function(view))

        def when_its_turn_comes(frame: FrameView) -> Any:
            # The call may have queued for a worker past its deadline.
            if deadline is not None and time.monotonic() >= deadline:
                raise DeadlineExpiredError("deadline passed while waiting for a worker")
            return plugin.function(frame)

        return normalise_output(await run_sync(when_its_turn_comes, view))

    def _ready(self) -> LoadedPlugin:
        if self.plugin is None:
            raise NotReadyError("the processor is still loading its plug-in")
        return self.plugin

    def describe(self) -> processor_pb2.ProcessorInfo:
        plugin = self._ready()
        return processor_pb2.ProcessorInfo(
            processor_name=plugin.name,
            processor_version=plugin.version,
            ordered_per_camera=plugin.ordered_per_camera,
            max_batch=self.max_batch,
            max_batch_bytes=self.max_batch_bytes,
        )

    def result(self, frame: frame_pb2.Frame, output: Output, elapsed_ns: int) -> result_pb2.Result:
        plugin = self._ready()
        result = result_pb2.Result(
            processor_name=plugin.name,
            processor_version=plugin.version,
            status=result_pb2.STATUS_OK,
            processing_time_ns=elapsed_ns,
        )
        # The caller has the image already; sending it back would double the
        # traffic (and copying it only to clear it costs a copy per frame).
        echoed = result.frame
        echoed.camera_id, echoed.session_id, echoed.seq = (
            frame.camera_id,
            frame.session_id,
            frame.seq,
        )
        echoed.capture_time_unix_ns = frame.capture_time_unix_ns
        echoed.capture_monotonic_ns = frame.capture_monotonic_ns
        echoed.width, echoed.height, echoed.encoding = frame.width, frame.height, frame.encoding
        echoed.metadata.update(frame.metadata)
        for detection in output.detections:
            item = result.detections.add(label=detection.label, confidence=detection.confidence)
            item.box.x_min, item.box.y_min, item.box.x_max, item.box.y_max = detection.box
            if detection.track_id is not None:
                item.track_id = detection.track_id
            item.attributes.update(detection.attributes)
        result.attributes.update(output.attributes)
        return result


def error_code(exc: BaseException) -> tuple[grpc.StatusCode, str]:
    """The status a failed call answers with: a vspd error names its own."""
    if isinstance(exc, ProcessorError):
        return exc.code, str(exc)
    if isinstance(exc, TimeoutError):
        return grpc.StatusCode.DEADLINE_EXCEEDED, "plug-in did not finish before the deadline"
    return grpc.StatusCode.INTERNAL, f"plug-in failed: {type(exc).__name__}: {exc}"


def log_failure(
    view: FrameView | None, code: grpc.StatusCode, message: str, exc: BaseException
) -> None:
    key = view.key if view is not None else "?"
    if code is grpc.StatusCode.INTERNAL:
        log.error("plug-in raised", frame=key, error=message, exc_info=exc)
    elif code is not grpc.StatusCode.UNAVAILABLE:
        log.warning("frame rejected", frame=key, code=code.name, reason=message)


def detector_frame(request: detector_pb2.ImageInfo) -> frame_pb2.Frame:
    """The original design's ImageInfo as a Frame: encoded image, or raw BGR by size."""
    data = request.image
    if len(data) == request.width * request.height * 3 and not _looks_encoded(data):
        encoding = frame_pb2.ENCODING_RAW_BGR24
    elif data[:8] == b"\x89PNG\r\n\x1a\n":
        encoding = frame_pb2.ENCODING_PNG
    else:
        encoding = frame_pb2.ENCODING_JPEG
    return frame_pb2.Frame(
        camera_id="detector",
        session_id="detector",
        width=request.width,
        height=request.height,
        encoding=encoding,
        image=data,
        capture_time_unix_ns=time.time_ns(),
        capture_monotonic_ns=time.monotonic_ns(),
    )


def _looks_encoded(data: bytes) -> bool:
    return data[:2] == b"\xff\xd8" or data[:8] == b"\x89PNG\r\n\x1a\n"


def detector_reply(
    request: detector_pb2.ImageInfo, view: FrameView, output: Output
) -> detector_pb2.ImageInfoWithMeta:
    width, height = request.width, request.height
    if not width or not height:
        height, width = view.image.shape[:2]
    reply = detector_pb2.ImageInfoWithMeta(image_info=request)
    for detection in output.detections:
        x1, y1, x2, y2 = detection.box
        reply.detections.add(
            category=detection.label,
            confidence=detection.confidence,
            x1=x1 * width,
            y1=y1 * height,
            x2=x2 * width,
            y2=y2 * height,
        )
    return reply


def fill_size(frame: frame_pb2.Frame) -> None:
    """Detector clients may leave width/height 0 for encoded images."""
    if frame.width and frame.height:
        return
    image = cv2.imdecode(np.frombuffer(frame.image, np.uint8), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise InvalidFrameError("image does not decode and has no width/height")
    frame.height, frame.width = image.shape[:2]
