"""The camera read loop, on its own thread: it never waits for encoding or Kafka.

Each captured frame gets the next sequence number at once, then goes into a
queue bounded in frames and in bytes; when it is full the frame is dropped and
counted, and the gap in sequence numbers shows it downstream. A failing source is reopened
with capped exponential backoff; sequence numbers continue. Any exception
from a source means a reopen, never a dead thread; a single unusable frame
(CorruptFrameError) is dropped and counted and the stream goes on. The
daemon watches the thread from outside (`is_alive`, `silent_for_s`).
"""

from __future__ import annotations

import contextvars
import queue
import threading
import time
from dataclasses import dataclass

import structlog

from vspd.capture.errors import CaptureError, CorruptFrameError
from vspd.capture.metrics import CaptureMetrics
from vspd.capture.sources.base import Captured, FrameSource
from vspd.config.model import CameraConfig, CaptureConfig
from vspd.runtime.retry import backoff_delay

log = structlog.get_logger(__name__)


@dataclass
class Numbered:
    seq: int
    captured: Captured


class CameraReader:
    def __init__(
        self,
        camera: CameraConfig,
        settings: CaptureConfig,
        source: FrameSource,
        metrics: CaptureMetrics,
    ) -> None:
        self.camera = camera
        self.settings = settings
        self.source = source
        self.metrics = metrics
        # SimpleQueue: C-implemented, a put or a get is one lock operation (queue.Queue
        # allocates a lock and runs a Condition in Python per wait: per frame, on a Pi).
        # The bound is kept here: only this thread puts, so qsize() is exact for it.
        self.frames: queue.SimpleQueue[Numbered] = queue.SimpleQueue()
        self._queue_frames = settings.queue_frames
        # Bytes put and taken, each written by one thread only (no lock): their
        # difference is what the queue holds.
        self._queue_bytes = settings.queue_bytes
        self._put_bytes = 0
        self._taken_bytes = 0
        self.state = "connecting"
        self.last_error = ""
        self.next_seq = 0
        self.last_frame_monotonic = time.monotonic()  # or when streaming began
        self._corrupt_seen = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def take(self, timeout_s: float | None = None) -> Numbered:
        """The next frame (queue.Empty if none within timeout_s; None: do not wait)."""
        numbered = (
            self.frames.get_nowait() if timeout_s is None else self.frames.get(timeout=timeout_s)
        )
        self._taken_bytes += _size(numbered.captured)
        return numbered

    def start(self) -> None:
        # The thread logs with the caller's context (camera id).
        context = contextvars.copy_context()
        self._thread = threading.Thread(
            target=context.run, args=(self._run,), name=f"camera-{self.camera.id}", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def is_alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def restart(self) -> None:
        """A new read thread after the old one died (sequence numbers continue)."""
        self.metrics.thread_restarts.inc()
        self._stop.clear()
        self.start()

    def silent_for_s(self) -> float:
        """How long a streaming source has delivered nothing (0 when not streaming)."""
        if self.state != "streaming":
            return 0.0
        return time.monotonic() - self.last_frame_monotonic

    def _set_state(self, state: str) -> None:
        if state != self.state:
            log.info("source state", state=state, error=self.last_error or None)
        self.state = state
        self.metrics.set_state(state)

    def _run(self) -> None:
        failures = 0
        while not self._stop.is_set():
            try:
                self.source.open()
            except CaptureError as exc:
                self.last_error = str(exc)
                if not exc.retriable:  # the error says it: waiting will not help
                    self._set_state("unsupported")
                    log.error("source cannot run here", error=str(exc))  # noqa: TRY400 - no traceback needed
                    return
                self._set_state("reconnecting")
            except Exception as exc:  # noqa: BLE001 - a source's own bug: reopened, never a dead thread
                self.last_error = f"{type(exc).__name__}: {exc}"[:300]
                self._set_state("reconnecting")
            else:
                self.last_error = ""
                self.last_frame_monotonic = time.monotonic()
                self._set_state("streaming")
                failures = 0
                self._stream()
                self._close_source()
                if self._stop.is_set():
                    return
                self._set_state("reconnecting")
            failures += 1
            delay = backoff_delay(
                self.settings.reconnect_initial_s, self.settings.reconnect_max_s, failures
            )
            self.metrics.reconnects.inc()
            log.warning(
                "source unavailable; retrying", retry_in_s=round(delay, 2), error=self.last_error
            )
            if self._stop.wait(delay):
                return

    def _stream(self) -> None:
        interval_ns = int(1e9 / self.camera.fps)
        next_due = time.monotonic_ns()
        last_accepted = 0
        while not self._stop.is_set():
            if self.source.paced_by_reader:
                wait_ns = next_due - time.monotonic_ns()
                if wait_ns > 0 and self._stop.wait(wait_ns / 1e9):
                    return
                # After a stall, do not burst to catch up: keep the pace from now.
                next_due = max(next_due + interval_ns, time.monotonic_ns())
            try:
                captured = self.source.read()
            except CorruptFrameError as exc:
                self.drop_corrupt(str(exc))
                continue
            except CaptureError as exc:  # reopened with backoff; a final one is said there
                self.last_error = str(exc)
                return
            except Exception as exc:  # noqa: BLE001 - a source's own bug: reopened, never a dead thread
                self.last_error = f"{type(exc).__name__}: {exc}"[:300]
                log.warning("source failed", error=self.last_error)
                return
            if not self.source.paced_by_reader:
                # A live camera faster than the target fps: keep every n-th frame.
                if captured.capture_monotonic_ns - last_accepted < interval_ns * 0.9:
                    continue
                last_accepted = captured.capture_monotonic_ns
            self._hand_over(captured)

    def _close_source(self) -> None:
        try:
            self.source.close()
        except Exception as exc:  # noqa: BLE001 - reopened anyway
            log.warning("source did not close cleanly", error=f"{type(exc).__name__}: {exc}")

    def drop_corrupt(self, reason: str) -> None:
        """A frame that cannot be used: counted, said now and then; the stream goes on."""
        self.metrics.dropped.labels("corrupt").inc()
        self._corrupt_seen += 1
        if self._corrupt_seen in (1, 10, 100) or self._corrupt_seen % 1000 == 0:
            log.warning("unusable frame dropped", reason=reason, dropped_so_far=self._corrupt_seen)

    def _hand_over(self, captured: Captured) -> None:
        self.last_frame_monotonic = time.monotonic()
        numbered = Numbered(self.next_seq, captured)
        self.next_seq += 1
        self.metrics.captured.inc()
        size = _size(captured)
        queued = self.frames.qsize()
        if queued >= self._queue_frames or (
            queued and self._put_bytes - self._taken_bytes + size > self._queue_bytes
        ):
            self.metrics.dropped.labels("queue_full").inc()
        else:
            self._put_bytes += size
            self.frames.put_nowait(numbered)


def _size(captured: Captured) -> int:
    if captured.jpeg is not None:
        return len(captured.jpeg)
    return captured.image.nbytes if captured.image is not None else 0
