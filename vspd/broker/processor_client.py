"""Calls to processors over gRPC: vspd.v1.Processor or the original Detector.Detect.

Calls are asynchronous (grpc futures); their completion is reported to a
callback on a gRPC thread. Addresses are used round-robin. A frame goes to
``Process`` as the very bytes read from Kafka: it is a serialized
``vspd.v1.Frame`` already, so it is not parsed and serialized again.

Each channel also holds one health ``Watch`` stream open (``ChannelKeeper``):
gRPC Python ends a channel's completion thread whenever its last call finishes
and starts a new one with the next call (grpc/_channel.py,
``_run_channel_spin_thread``). With a fast processor calls come in bursts: a
thread start per burst, ~10 % of the broker's samples in py-spy (broker_bench
(b); its CPU per frame changed within this machine's noise). An open stream
keeps the one thread alive.
"""

from __future__ import annotations

import itertools
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import structlog

from vspd import wire
from vspd.config.model import BrokerConfig
from vspd.health.v1 import health_pb2
from vspd.legacy import detector_pb2, detector_pb2_grpc
from vspd.runtime.retry import RETRIABLE_GRPC_CODES
from vspd.v1 import frame_pb2, processor_pb2, result_pb2
from vspd.wire import grpc_message_limit

log = structlog.get_logger(__name__)

# Worth trying again: the processor is down, overloaded, or was too slow this time.
TRANSIENT_CODES = frozenset(code for code in grpc.StatusCode if code.name in RETRIABLE_GRPC_CODES)
# gRPC says RESOURCE_EXHAUSTED both for "overloaded" (try again) and for a
# message over a size limit (it will never fit): the details tell them apart.
_TOO_LARGE = "larger than max"
PROCESS_METHOD = "/vspd.v1.Processor/Process"
BATCH_METHOD = "/vspd.v1.Processor/ProcessBatch"
BATCH_TOO_LARGE = "batch too large for the processor"
DESCRIBE_METHOD = "/vspd.v1.Processor/Describe"
DESCRIBE_TIMEOUT_S = 5.0
HEALTH_WATCH_METHOD = "/grpc.health.v1.Health/Watch"
# After a Watch stream ended (processor restarted or away), not opened again sooner.
REWATCH_AFTER_S = 1.0
# A Watch stream answers on a change of status; one that says more is cancelled.
WATCH_ANSWERS_MAX = 1000


@dataclass(frozen=True)
class CallOutcome:
    result: result_pb2.Result | None
    code: grpc.StatusCode
    details: str
    seconds: float

    @property
    def transient(self) -> bool:
        """Whether the same call can succeed later: this *is* the retry decision."""
        if self.result is not None or self.code not in TRANSIENT_CODES:
            return False
        return not (self.code is grpc.StatusCode.RESOURCE_EXHAUSTED and _TOO_LARGE in self.details)


@dataclass(frozen=True)
class ProcessorNeeds:
    """What the processor declared with Describe (defaults for one that cannot)."""

    ordered_per_camera: bool = False
    name: str = ""
    max_batch: int = 1  # ProcessBatch: frames per call at most (1: Process, one by one)
    max_batch_bytes: int = 0


class ChannelKeeper:
    """One open health Watch stream on a channel, so that its completion thread stays.

    A thread of its own reads the stream (gRPC delivers a stream's end only
    after its messages were read) and ignores what it says: calls tell the
    processor's state soon enough. The stream is opened again, at most once a
    second, after it ended (the processor restarted or went away), and not at
    all once the server said it has no health service (UNIMPLEMENTED).
    """

    def __init__(self, channel: grpc.Channel) -> None:
        self._watch = channel.unary_stream(
            HEALTH_WATCH_METHOD,
            request_serializer=health_pb2.HealthCheckRequest.SerializeToString,
            response_deserializer=health_pb2.HealthCheckResponse.FromString,
        )
        self._stream: Any = None
        self._open_after = 0.0
        self.unsupported = False

    @property
    def open(self) -> bool:
        return self._stream is not None

    def keep_open(self) -> None:
        """Called before each call on the channel: cheap when the stream is open."""
        if self._stream is not None or self.unsupported or time.monotonic() < self._open_after:
            return
        stream = self._watch(health_pb2.HealthCheckRequest(service=""))
        self._stream = stream
        threading.Thread(
            target=self._read, args=(stream,), name="processor-watch", daemon=True
        ).start()

    def _read(self, stream: Any) -> None:
        answers = 0
        try:
            for _status in stream:
                answers += 1
                if answers > WATCH_ANSWERS_MAX:  # health says a change, not a flood
                    log.warning("processor floods its health Watch stream; not watched again")
                    self.unsupported = True
                    stream.cancel()
                    return
        except grpc.RpcError as exc:
            if exc.code() is grpc.StatusCode.UNIMPLEMENTED:
                self.unsupported = True
        finally:
            self._open_after = time.monotonic() + REWATCH_AFTER_S
            self._stream = None

    def close(self) -> None:
        self.unsupported = True  # never opened again
        stream = self._stream
        if stream is not None:
            stream.cancel()


Done = Callable[[CallOutcome], None]
Described = Callable[[ProcessorNeeds | None, str], None]


class ProcessorClient:
    def __init__(self, config: BrokerConfig, max_message_bytes: int) -> None:
        self._config = config
        self.max_call_bytes = grpc_message_limit(max_message_bytes)
        options = [
            ("grpc.max_receive_message_length", self.max_call_bytes),
            ("grpc.max_send_message_length", self.max_call_bytes),
            ("grpc.http2.max_frame_size", 16 * 1024 * 1024 - 1),  # results in one DATA frame
        ]
        credentials = channel_credentials(config)
        self._channels = [
            grpc.secure_channel(address, credentials, options=options)
            if credentials is not None
            else grpc.insecure_channel(address, options=options)
            for address in config.processor_addresses
        ]
        self._process = [
            channel.unary_unary(
                PROCESS_METHOD,
                request_serializer=None,  # the request is a serialized Frame already
                response_deserializer=result_pb2.Result.FromString,
            )
            for channel in self._channels
        ]
        self._batch = [
            channel.unary_unary(
                BATCH_METHOD,
                request_serializer=None,  # built from the frames' own bytes (batch_request)
                response_deserializer=processor_pb2.BatchResult.FromString,
            )
            for channel in self._channels
        ]
        self._describe = [
            channel.unary_unary(
                DESCRIBE_METHOD,
                request_serializer=processor_pb2.DescribeRequest.SerializeToString,
                response_deserializer=processor_pb2.ProcessorInfo.FromString,
            )
            for channel in self._channels
        ]
        self._detect = [detector_pb2_grpc.DetectorStub(c).Detect for c in self._channels]
        self.keepers = [ChannelKeeper(channel) for channel in self._channels]
        self._next = itertools.cycle(range(len(self._channels)))

    def call(self, frame_bytes: bytes, frame: frame_pb2.Frame, done: Done) -> None:
        index = next(self._next)
        self.keepers[index].keep_open()
        started = time.monotonic()
        timeout = self._config.call_timeout_s
        if self._config.processor_api == "vspd":
            future = self._process[index].future(frame_bytes, timeout=timeout)
            future.add_done_callback(lambda f: done(_vspd_outcome(f, started)))
        else:
            request = detector_pb2.ImageInfo(
                width=frame.width, height=frame.height, image=frame.image
            )
            future = self._detect[index].future(request, timeout=timeout)
            future.add_done_callback(lambda f: done(_detector_outcome(f, frame, started)))

    def call_batch(self, frames: list[tuple[bytes, Done]]) -> None:
        """Several frames in one ProcessBatch call; each gets its own outcome."""
        index = next(self._next)
        self.keepers[index].keep_open()
        started = time.monotonic()
        future = self._batch[index].future(
            batch_request([value for value, _done in frames]), timeout=self._config.call_timeout_s
        )

        def finished(future: Any) -> None:
            for (_value, done), outcome in zip(
                frames, _batch_outcomes(future, started, len(frames)), strict=True
            ):
                done(outcome)

        future.add_done_callback(finished)

    def describe(self, done: Described) -> None:
        """Ask every processor what it needs; `done(needs, error)` on a gRPC thread.

        needs is None when a processor could not be asked (error says why);
        the original Detector contract, and a processor without Describe,
        need nothing special.
        """
        if self._config.processor_api != "vspd":
            done(ProcessorNeeds(), "")
            return
        answers: list[ProcessorNeeds] = []
        remaining = [len(self._describe)]
        failed: list[str] = []

        def one(future: Any) -> None:
            error = future.exception()
            if error is None:
                info: processor_pb2.ProcessorInfo = future.result()
                answers.append(
                    ProcessorNeeds(
                        info.ordered_per_camera,
                        info.processor_name,
                        max(1, info.max_batch),
                        info.max_batch_bytes,
                    )
                )
            elif getattr(error, "code", lambda: None)() is grpc.StatusCode.UNIMPLEMENTED:
                answers.append(ProcessorNeeds())
            else:
                failed.append(getattr(error, "details", lambda: str(error))() or str(error))
            remaining[0] -= 1
            if remaining[0]:
                return
            if failed:
                done(None, failed[0])
            else:
                # Several processors: order if any of them needs it.
                # Several processors: order if any needs it; batches all of them take.
                done(
                    ProcessorNeeds(
                        any(a.ordered_per_camera for a in answers),
                        ",".join(sorted({a.name for a in answers if a.name})),
                        min(a.max_batch for a in answers),
                        min(a.max_batch_bytes for a in answers),
                    ),
                    "",
                )

        for stub in self._describe:
            stub.future(
                processor_pb2.DescribeRequest(), timeout=DESCRIBE_TIMEOUT_S
            ).add_done_callback(one)

    def close(self) -> None:
        for keeper in self.keepers:
            keeper.close()
        for channel in self._channels:
            channel.close()


def channel_credentials(config: BrokerConfig) -> grpc.ChannelCredentials | None:
    """TLS to the processor (and this broker's certificate, for mutual TLS); None: plaintext."""
    if not config.processor_tls:
        return None

    def read(path: str) -> bytes | None:
        return Path(path).read_bytes() if path else None

    return grpc.ssl_channel_credentials(
        root_certificates=read(config.processor_ca_file),
        private_key=read(config.processor_key_file),
        certificate_chain=read(config.processor_cert_file),
    )


def _failure(future: Any, started: float) -> CallOutcome | None:
    error = future.exception()
    if error is None:
        return None
    code = error.code() if hasattr(error, "code") else grpc.StatusCode.UNKNOWN
    details = error.details() if hasattr(error, "details") else str(error)
    return CallOutcome(None, code, details or code.name, time.monotonic() - started)


def batch_request(frames: list[bytes]) -> bytes:
    """A serialized FrameBatch from serialized Frames, without parsing them again
    (``repeated Frame frames = 1``: each frame is field 1, length-delimited)."""
    parts: list[bytes] = []
    for value in frames:  # one join: each frame's bytes are copied once, not twice
        parts += (b"\x0a", wire.varint(len(value)), value)
    return b"".join(parts)


_CODES = {code.value[0]: code for code in grpc.StatusCode}


def _batch_outcomes(future: Any, started: float, count: int) -> list[CallOutcome]:
    failure = _failure(future, started)
    if failure is not None:
        if failure.code is grpc.StatusCode.RESOURCE_EXHAUSTED and _TOO_LARGE in failure.details:
            # The batch, not a frame, is over the processor's limit: each frame is
            # tried again in smaller batches (down to alone), none is lost for it.
            failure = CallOutcome(
                None,
                grpc.StatusCode.UNAVAILABLE,
                # Not gRPC's own words, which would read as "this frame never fits".
                f"{BATCH_TOO_LARGE}; its frames are called again in smaller batches",
                failure.seconds,
            )
        return [failure] * count
    seconds = time.monotonic() - started
    reply: processor_pb2.BatchResult = future.result()
    if len(reply.items) != count:
        wrong = CallOutcome(
            None,
            grpc.StatusCode.INTERNAL,
            f"the processor answered {len(reply.items)} items for a batch of {count}",
            seconds,
        )
        return [wrong] * count
    outcomes = []
    for item in reply.items:
        if item.code == 0 and item.HasField("result"):
            outcomes.append(CallOutcome(item.result, grpc.StatusCode.OK, "", seconds))
        else:
            code = _CODES.get(item.code, grpc.StatusCode.UNKNOWN)
            if code is grpc.StatusCode.OK:  # OK without a result: a broken processor
                code = grpc.StatusCode.INTERNAL
            outcomes.append(CallOutcome(None, code, item.details or code.name, seconds))
    return outcomes


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
    if math.isnan(value):  # from a misbehaving detector: an empty edge, never NaN
        return 0.0
    return min(1.0, max(0.0, value))
