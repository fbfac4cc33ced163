"""The gRPC server: vspd.v1.Processor and/or Detector.Detect, plus grpc.health.v1.

One grpc.aio server on its own event loop, whatever the plug-in: async
plug-ins are awaited on it, sync ones run in a pool of `workers` threads
(``concurrency`` only documents which kind the plug-in is). A request is
received whole before any worker is involved; health answers on the loop.
A call whose deadline has already passed when its turn comes is not processed.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import grpc
import structlog

from vspd.config.model import ProcessorConfig
from vspd.health.v1 import health_pb2_grpc
from vspd.legacy import detector_pb2, detector_pb2_grpc
from vspd.processor.core import (
    ProcessingCore,
    detector_frame,
    detector_reply,
    error_code,
    fill_size,
    log_failure,
)
from vspd.processor.errors import DeadlineExpiredError, NotReadyError, ProcessorError
from vspd.processor.health import NOT_SERVING, SERVING, HealthServicer
from vspd.processor.plugin import FrameView, Output
from vspd.v1 import frame_pb2, processor_pb2, processor_pb2_grpc, result_pb2

log = structlog.get_logger(__name__)

PROCESSOR_SERVICE = "vspd.v1.Processor"
DETECTOR_SERVICE = "Detector"
_EXPIRED = "deadline passed before processing started"
HTTP2_MAX_FRAME_SIZE = 16 * 1024 * 1024 - 1  # the largest HTTP/2 allows
WORKER_PREFIX = "plugin-call"  # the threads that run sync plug-ins
WATCH_STREAMS_ALLOWED = 16


class _Call:
    """Bookkeeping of one call: metrics, timing, error mapping."""

    def __init__(self, core: ProcessingCore) -> None:
        self.core = core
        self.start = time.perf_counter_ns()

    def __enter__(self) -> _Call:
        self.core.metrics.in_flight.inc()
        self.core.in_flight += 1
        return self

    def __exit__(self, *_exc: object) -> None:
        self.core.metrics.in_flight.dec()
        self.core.in_flight -= 1
        self.core.metrics.latency.observe((time.perf_counter_ns() - self.start) / 1e9)

    def elapsed_ns(self) -> int:
        return time.perf_counter_ns() - self.start

    def succeeded(self) -> None:
        self.core.ok += 1
        self.core.metrics.calls.labels("OK").inc()

    def failed(self, view: FrameView | None, exc: BaseException) -> tuple[grpc.StatusCode, str]:
        code, message = error_code(exc)
        self.core.failed += 1
        self.core.metrics.calls.labels(code.name).inc()
        log_failure(view, code, message, exc)
        return code, message


def _deadline(context: Any) -> float | None:
    remaining = context.time_remaining()
    return None if remaining is None else time.monotonic() + remaining


def _check_deadline(deadline: float | None) -> None:
    """A batch's frame whose deadline passed while earlier ones ran is not worked on."""
    if deadline is not None and time.monotonic() >= deadline:
        raise DeadlineExpiredError(_EXPIRED)


def _check_not_expired(context: Any) -> None:
    """A call whose deadline passed while it queued is not worked on (and counted as such)."""
    remaining = context.time_remaining()
    if remaining is not None and remaining <= 0:
        raise DeadlineExpiredError(_EXPIRED)


class _Handler:
    """The one skeleton of a call, whatever the contract: deadline, bookkeeping, error mapping.

    A contract supplies only its adapters: the request as a Frame, and the
    reply built from the plug-in's Output.
    """

    def __init__(self, core: ProcessingCore, run_sync: Callable[..., Any]) -> None:
        self.core = core
        self.run_sync = run_sync

    async def handle(
        self,
        context: Any,
        as_frame: Callable[[], frame_pb2.Frame],
        reply: Callable[[frame_pb2.Frame, FrameView, Output, int], Any],
    ) -> Any:
        view = None
        with _Call(self.core) as call:
            try:
                _check_not_expired(context)
                frame = as_frame()
                view = FrameView(frame, self.core.states)
                output = await self.core.call_async(view, self.run_sync, _deadline(context))
                answer = reply(frame, view, output, call.elapsed_ns())
            except Exception as exc:  # noqa: BLE001 - every failure becomes a status
                code, message = call.failed(view, exc)
                await context.abort(code, message)
            call.succeeded()
            return answer

    async def item(self, frame: frame_pb2.Frame, deadline: float | None) -> processor_pb2.BatchItem:
        """One frame of a batch: the same steps as a call, the status in the answer."""
        view = None
        with _Call(self.core) as call:
            try:
                _check_deadline(deadline)
                view = FrameView(frame, self.core.states)
                output = await self.core.call_async(view, self.run_sync, deadline)
                result = self.core.result(frame, output, call.elapsed_ns())
            except Exception as exc:  # noqa: BLE001 - every failure becomes this frame's status
                code, message = call.failed(view, exc)
                return processor_pb2.BatchItem(code=code.value[0], details=message)
            call.succeeded()
            return processor_pb2.BatchItem(result=result)


class AsyncProcessor(processor_pb2_grpc.ProcessorServicer):
    def __init__(self, core: ProcessingCore, run_sync: Callable[..., Any]) -> None:
        self.core = core
        self._handler = _Handler(core, run_sync)

    async def Process(self, request: frame_pb2.Frame, context: Any) -> result_pb2.Result:
        def reply(frame: frame_pb2.Frame, _view: FrameView, output: Output, ns: int) -> Any:
            return self.core.result(frame, output, ns)

        result: result_pb2.Result = await self._handler.handle(context, lambda: request, reply)
        return result

    async def ProcessBatch(
        self, request: processor_pb2.FrameBatch, context: Any
    ) -> processor_pb2.BatchResult:
        frames = request.frames
        if len(frames) > self.core.max_batch:
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"a batch of {len(frames)} frames; this processor takes at most "
                f"{self.core.max_batch} (Describe's max_batch)",
            )
        if self.core.plugin is None:
            await context.abort(
                grpc.StatusCode.UNAVAILABLE, "the processor is still loading its plug-in"
            )
        deadline = _deadline(context)
        # Every frame concurrently, on the workers; for a plug-in that keeps state
        # per camera, one camera's frames one after the other, in the batch's order.
        plugin = self.core.plugin
        ordered = plugin is not None and plugin.ordered_per_camera
        by_camera: dict[str, list[int]] = {}
        for index, frame in enumerate(frames):
            by_camera.setdefault(frame.camera_id if ordered else str(index), []).append(index)
        items: list[processor_pb2.BatchItem | None] = [None] * len(frames)

        async def camera(indices: list[int]) -> None:
            for index in indices:
                items[index] = await self._handler.item(frames[index], deadline)

        await asyncio.gather(*(camera(indices) for indices in by_camera.values()))
        return processor_pb2.BatchResult(items=[item for item in items if item is not None])

    async def Describe(
        self, _request: processor_pb2.DescribeRequest, context: Any
    ) -> processor_pb2.ProcessorInfo:
        try:
            return self.core.describe()
        except NotReadyError as exc:  # still loading: UNAVAILABLE, the broker asks again
            await context.abort(grpc.StatusCode.UNAVAILABLE, str(exc))
            raise


class AsyncDetector(detector_pb2_grpc.DetectorServicer):
    def __init__(self, core: ProcessingCore, run_sync: Callable[..., Any]) -> None:
        self._handler = _Handler(core, run_sync)

    async def Detect(
        self, request: detector_pb2.ImageInfo, context: Any
    ) -> detector_pb2.ImageInfoWithMeta:
        def as_frame() -> frame_pb2.Frame:
            frame = detector_frame(request)
            fill_size(frame)
            return frame

        def reply(_frame: frame_pb2.Frame, view: FrameView, output: Output, _ns: int) -> Any:
            return detector_reply(request, view, output)

        answer: detector_pb2.ImageInfoWithMeta = await self._handler.handle(
            context, as_frame, reply
        )
        return answer


def _options(max_message_bytes: int) -> list[tuple[str, int]]:
    return [
        ("grpc.max_receive_message_length", max_message_bytes),
        ("grpc.max_send_message_length", max_message_bytes),
        ("grpc.so_reuseport", 0),
        # A connection that has not finished its TLS/HTTP2 handshake after 5 s is
        # dropped (gRPC's default is 120 s), one idle for 5 minutes closed: idle
        # or half-open connections cannot pile up until the descriptors run out.
        ("grpc.server_handshake_timeout_ms", 5_000),
        ("grpc.max_connection_idle_ms", 300_000),
        ("grpc.max_concurrent_streams", 256),
        # A frame in one HTTP/2 DATA frame instead of 16 KiB pieces: ~15 % less CPU per call.
        ("grpc.http2.max_frame_size", HTTP2_MAX_FRAME_SIZE),
    ]


def server_credentials(config: ProcessorConfig) -> grpc.ServerCredentials | None:
    """TLS when a certificate is configured; mutual TLS (client certificate required) with a client CA."""
    if not config.tls_cert_file:
        return None
    try:
        key = Path(config.tls_key_file).read_bytes()
        chain = Path(config.tls_cert_file).read_bytes()
        client_ca = (
            Path(config.tls_client_ca_file).read_bytes() if config.tls_client_ca_file else None
        )
    except OSError as exc:
        raise ProcessorError(f"cannot read TLS files: {exc}") from None
    return grpc.ssl_server_credentials(
        [(key, chain)], root_certificates=client_ca, require_client_auth=client_ca is not None
    )


def _services(config: ProcessorConfig) -> list[str]:
    return {"vspd": [PROCESSOR_SERVICE], "detector": [DETECTOR_SERVICE]}[config.api]


class ProcessorServer:
    """Owns the gRPC server, whichever concurrency model; start/stop from the main thread."""

    def __init__(
        self, config: ProcessorConfig, core: ProcessingCore, max_message_bytes: int
    ) -> None:
        self.config = config
        self.core = core
        self.max_message_bytes = max_message_bytes
        self.health = HealthServicer(_services(config))
        self.port = 0
        self._pool = ThreadPoolExecutor(config.workers, thread_name_prefix=WORKER_PREFIX)
        if config.api == "vspd":
            core.max_batch = config.max_batch
            core.max_batch_bytes = max(0, max_message_bytes - 65_536)  # room for the framing
        self._server: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: threading.Thread | None = None
        self._stopped = False

    def start(self) -> None:
        # One server for both concurrency models: grpc.aio receives each request
        # completely before a worker is involved, so a client that sends headers
        # and never the body holds no worker (the thread-pool server's handlers
        # wait for the body inside a worker). Sync plug-ins run in `workers` threads.
        self._start_asyncio()
        log.info(
            "listening",
            address=self.config.listen,
            port=self.port,
            api=self.config.api,
            concurrency=self.config.concurrency,
        )

    def serving(self) -> None:
        self.health.set_all(SERVING)

    def stop(self, grace_s: float) -> None:
        """Health goes NOT_SERVING, in-flight calls get `grace_s` to finish. Idempotent."""
        if self._stopped:
            return
        self._stopped = True
        self.health.set_all(NOT_SERVING)
        self.health.close()
        if self._loop is not None:
            future = asyncio.run_coroutine_threadsafe(self._server.stop(grace_s), self._loop)
            future.result(timeout=grace_s + 5)
            self._loop.call_soon_threadsafe(self._loop.stop)
            if self._loop_thread is not None:
                self._loop_thread.join(timeout=5)
                if not self._loop_thread.is_alive():
                    self._loop.close()
        elif self._server is not None:
            self._server.stop(grace_s).wait(grace_s + 5)
        self._pool.shutdown(wait=False, cancel_futures=True)
        self.core.close()

    def _bind(self, server: Any) -> None:
        credentials = server_credentials(self.config)
        try:
            if credentials is None:
                port = server.add_insecure_port(self.config.listen)
            else:
                port = server.add_secure_port(self.config.listen, credentials)
        except RuntimeError:  # newer grpcio raises where 1.51 returns 0
            port = 0
        if not port:
            raise ProcessorError(
                f"cannot listen on {self.config.listen} (in use, or not an address here)"
            )
        self.port = port

    def _start_asyncio(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        self._loop_thread = threading.Thread(target=loop.run_forever, name="grpc-aio", daemon=True)
        self._loop_thread.start()
        asyncio.run_coroutine_threadsafe(self._build_aio(), loop).result(timeout=30)

    async def _build_aio(self) -> None:
        loop = asyncio.get_running_loop()

        async def run_sync(function: Callable[..., Any], *args: Any) -> Any:
            return await loop.run_in_executor(self._pool, function, *args)

        server = grpc.aio.server(
            migration_thread_pool=ThreadPoolExecutor(2, thread_name_prefix="health"),
            options=_options(self.max_message_bytes),
            # Calls beyond this are refused (RESOURCE_EXHAUSTED, retried by the broker),
            # plus room for health Watch streams, which stay open (each broker holds one).
            maximum_concurrent_rpcs=self.config.workers * 8 + WATCH_STREAMS_ALLOWED,
        )
        health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
        if self.config.api == "vspd":
            processor_pb2_grpc.add_ProcessorServicer_to_server(
                AsyncProcessor(self.core, run_sync), server
            )
        else:
            detector_pb2_grpc.add_DetectorServicer_to_server(
                AsyncDetector(self.core, run_sync), server
            )
        self._bind(server)
        await server.start()
        self._server = server
