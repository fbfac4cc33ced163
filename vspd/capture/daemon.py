"""`vspd capture --camera ID`: one camera into the frames topic."""

from __future__ import annotations

import argparse
import queue
import time
import uuid

import structlog
from prometheus_client import CollectorRegistry

from vspd import wire
from vspd.capture.encoder import JpegEncoder
from vspd.capture.errors import CaptureError
from vspd.capture.metrics import CaptureMetrics
from vspd.capture.reader import CameraReader, Numbered
from vspd.capture.sender import FrameSender
from vspd.capture.sources import open_source
from vspd.capture.sources.picamera import import_picamera2
from vspd.config import CameraConfig, VspdConfig
from vspd.runtime.lifecycle import StopFlag
from vspd.runtime.metrics import SlidingRate, counted
from vspd.runtime.readiness import Readiness
from vspd.runtime.service import serve
from vspd.urls import redact_url

log = structlog.get_logger(__name__)

FLUSH_ON_STOP_S = 30.0
_STEP_WAIT_S = 0.1


class CaptureDaemon:
    def __init__(
        self, config: VspdConfig, camera: CameraConfig, registry: CollectorRegistry
    ) -> None:
        self.name = f"capture@{camera.id}"
        self.camera = camera
        self.session_id = str(uuid.uuid4())
        self._frames = wire.FrameWriter(camera.id, self.session_id)
        self.metrics = CaptureMetrics(registry)
        self.reader = CameraReader(camera, config.capture, open_source(camera), self.metrics)
        self.sender = FrameSender(config, camera.id, self.metrics)
        self.encoder = JpegEncoder(camera)
        self._rate = SlidingRate()
        self._stalled_after_s = config.capture.stalled_after_s
        self._said_stalled = False

    def start(self) -> None:
        if self.camera.source_spec.kind == "picamera2":
            import_picamera2()  # off a Pi: one clear error now, not a reconnect loop
        structlog.contextvars.bind_contextvars(camera=self.camera.id)
        source = self.camera.source
        shown = redact_url(source) if "://" in source else source
        log.info("capture session", session_id=self.session_id, source=shown)
        self.reader.start()

    def step(self) -> None:
        self._supervise()
        try:
            numbered = self.reader.take(_STEP_WAIT_S)
        except queue.Empty:
            pass
        else:
            self._encode_and_buffer(numbered)
            # Take whatever else is ready without waiting.
            while True:
                try:
                    self._encode_and_buffer(self.reader.take())
                except queue.Empty:
                    break
        self.sender.pump()

    def _supervise(self) -> None:
        """The read thread, watched from outside: a dead one is started again."""
        reader = self.reader
        if not reader.is_alive() and reader.state != "unsupported":
            log.error("camera read thread ended; starting it again", error=reader.last_error)
            reader.restart()

    def alive(self) -> bool:
        """False once a streaming camera has delivered nothing for stalled_after_s: a read
        that hangs in the camera's library cannot be interrupted, so the watchdog (and
        /healthz) stop and systemd restarts the daemon."""
        silent_s = self.reader.silent_for_s()
        stalled = silent_s > self._stalled_after_s
        if stalled and not self._said_stalled:
            log.error(
                "camera delivers no frame while streaming; watchdog stopped so that systemd "
                "restarts capture",
                silent_s=round(silent_s, 1),
                stalled_after_s=self._stalled_after_s,
            )
        self._said_stalled = stalled
        return not stalled

    def _encode_and_buffer(self, numbered: Numbered) -> None:
        try:
            value = self.encode(numbered)
        except CaptureError as exc:  # one bad frame: dropped, never an exit
            self.reader.drop_corrupt(str(exc))
            return
        captured = numbered.captured
        self.sender.add(
            numbered.seq, value, captured.capture_monotonic_ns, captured.capture_time_unix_ns
        )

    def encode(self, numbered: Numbered) -> bytes:
        """The serialized Frame: the camera's JPEG (pass-through) or one encoded here."""
        captured = numbered.captured
        camera = self.camera
        if self.encoder.passes_through(captured):
            assert captured.jpeg is not None  # noqa: S101 - passes_through says so
            jpeg, width, height = captured.jpeg, captured.width, captured.height
        else:
            started = time.perf_counter()
            jpeg, width, height = self.encoder.encode(captured)
            self.metrics.encode_seconds.observe(time.perf_counter() - started)
        return self._frames.serialize(
            seq=numbered.seq,
            capture_time_unix_ns=captured.capture_time_unix_ns,
            capture_monotonic_ns=captured.capture_monotonic_ns,
            width=width or camera.width,
            height=height or camera.height,
            image=jpeg,
            metadata=captured.metadata,
        )

    def status(self) -> str:
        reader, sender, metrics = self.reader, self.sender, self.metrics
        captured = counted(metrics.captured)
        text = (
            f"{reader.state} {self._rate.update(captured):.1f} fps; captured {captured:.0f}, "
            f"sent {counted(metrics.sent):.0f}, dropped {counted(metrics.dropped):.0f}; "
            f"buffer {sender.pending_bytes // 1024} KiB"
        )
        return f"{text}; {reader.last_error}" if reader.last_error else text

    def readiness(self) -> Readiness:
        """Ready: the camera delivers frames and Kafka takes them."""
        reader = self.reader
        source = f"camera {reader.state}" + (f": {reader.last_error}" if reader.last_error else "")
        kafka = self.sender.kafka_unreachable
        return Readiness.first_failing(
            Readiness(reader.state == "streaming", source),
            Readiness(not kafka, f"Kafka unreachable: {kafka}"),
        )

    def drain(self) -> None:
        self.reader.stop()
        while True:
            try:
                self._encode_and_buffer(self.reader.take())
            except queue.Empty:
                break
        left = self.sender.flush(FLUSH_ON_STOP_S)
        if left:
            log.error("frames not delivered at shutdown", frames=left)
        # The session's final figures, as fields (what `vspd demo` checks against Kafka).
        log.info(
            "capture ended",
            captured=int(counted(self.metrics.captured)),
            sent=int(counted(self.metrics.sent)),
            dropped=int(counted(self.metrics.dropped)),
        )


def main(config: VspdConfig, args: argparse.Namespace) -> int:
    try:
        camera = config.camera(args.camera)
    except KeyError as exc:
        raise CaptureError(str(exc.args[0])) from None
    registry = CollectorRegistry()
    stop = StopFlag().install()
    daemon = CaptureDaemon(config, camera, registry)
    port = config.metrics.capture_port + config.camera_index(camera.id)
    return serve(daemon, stop, config, registry, port)
