"""Encoded frames to Kafka: idempotent, keyed by camera, bounded in memory.

Frames wait in a FIFO buffer bounded in bytes (`[capture] buffer_bytes`) and
are handed to the producer while the bytes Kafka has not yet acknowledged
stay under a window. When Kafka is unreachable the window fills, the buffer
grows, and beyond its bound the oldest frames are dropped, counted, and logged
once per burst. Sending resumes by itself when Kafka is back.
"""

from __future__ import annotations

import collections
import time
from dataclasses import dataclass
from typing import Any

import structlog
from confluent_kafka import KafkaError, Message, Producer

from vspd.capture.metrics import CaptureMetrics
from vspd.config.model import VspdConfig
from vspd.runtime.kafka import KafkaErrorLog, producer_settings
from vspd.wire import frame_key

log = structlog.get_logger(__name__)


@dataclass
class Pending:
    seq: int
    value: bytes
    capture_monotonic_ns: int
    capture_time_unix_ns: int = 0


class FrameSender:
    def __init__(self, config: VspdConfig, camera_id: str, metrics: CaptureMetrics) -> None:
        self.topic = config.kafka.frames_topic
        self.key = frame_key(camera_id)
        self.metrics = metrics
        self.limit_bytes = config.capture.buffer_bytes
        # Bytes handed to librdkafka but not yet acknowledged: a quarter of the
        # bound, so that most of it stays droppable (oldest first) in our buffer.
        self.window_bytes = max(1024, self.limit_bytes // 4)
        self.buffer: collections.deque[Pending] = collections.deque()
        self.buffered_bytes = 0
        self.unacked_bytes = 0
        self._burst_dropped = 0
        self._errors = KafkaErrorLog("vspd-capture")
        self.producer = Producer(
            producer_settings(
                config.kafka,
                f"vspd-capture-{camera_id}",
                # The window bounds what librdkafka holds; never drop inside it.
                **{
                    "queue.buffering.max.kbytes": max(1024, self.window_bytes // 1024 * 2 + 1024),
                    "queue.buffering.max.messages": 100_000,
                    "message.timeout.ms": 0,
                    "error_cb": self._on_error,
                },
            )
        )

    @property
    def pending_bytes(self) -> int:
        return self.buffered_bytes + self.unacked_bytes

    def add(
        self, seq: int, value: bytes, capture_monotonic_ns: int, capture_time_unix_ns: int = 0
    ) -> None:
        """Buffer a frame, dropping the oldest beyond buffer_bytes (pump() sends it)."""
        self.buffer.append(Pending(seq, value, capture_monotonic_ns, capture_time_unix_ns))
        self.buffered_bytes += len(value)
        while self.buffer and self.pending_bytes > self.limit_bytes:
            dropped = self.buffer.popleft()
            self.buffered_bytes -= len(dropped.value)
            self._burst_dropped += 1
            self.metrics.dropped.labels("buffer_full").inc()
            if self._burst_dropped == 1:
                log.warning(
                    "Kafka buffer full: dropping oldest frames",
                    buffer_bytes=self.limit_bytes,
                    first_dropped_seq=dropped.seq,
                )

    def pump(self, timeout_s: float = 0.0) -> None:
        """Hand buffered frames to the producer as the window allows; serve callbacks."""
        while self.buffer and self.unacked_bytes + len(self.buffer[0].value) <= max(
            self.window_bytes, len(self.buffer[0].value)
        ):
            item = self.buffer[0]
            try:
                self.producer.produce(
                    self.topic,
                    value=item.value,
                    key=self.key,
                    on_delivery=self._delivered(item),
                    # The message's time is the capture time, also for frames sent
                    # late (after an outage): clips and replays find frames by it.
                    timestamp=item.capture_time_unix_ns // 1_000_000,
                )
            except BufferError:
                break  # librdkafka's own queue is full: try again after poll()
            self.buffer.popleft()
            self.buffered_bytes -= len(item.value)
            self.unacked_bytes += len(item.value)
        self.producer.poll(timeout_s)
        self.metrics.buffer_bytes.set(self.pending_bytes)

    def _delivered(self, item: Pending) -> Any:
        # The callback keeps the frame's figures, not the frame: librdkafka holds its own
        # copy until Kafka acknowledges it, and a second one here would double what the
        # window holds during an outage.
        size, seq, captured_ns = len(item.value), item.seq, item.capture_monotonic_ns

        def on_delivery(error: KafkaError | None, _message: Message) -> None:
            self.unacked_bytes -= size
            if error is None:
                self._errors.reached()
                self.metrics.sent.inc()
                self.metrics.delivery_seconds.observe((time.monotonic_ns() - captured_ns) / 1e9)
                if self._burst_dropped:
                    log.warning("Kafka buffer drained", dropped_in_burst=self._burst_dropped)
                    self._burst_dropped = 0
            else:
                self.metrics.dropped.labels("kafka_error").inc()
                log.error("frame not delivered", seq=seq, error=error.str())

        return on_delivery

    @property
    def kafka_unreachable(self) -> str:
        """Why Kafka cannot be reached now ("" when it can), for readiness."""
        self._errors.recheck(lambda: self.producer.list_topics(timeout=0.5))
        return self._errors.unreachable

    def _on_error(self, error: KafkaError) -> None:
        # Transport errors are normal during an outage; librdkafka keeps retrying.
        # Each distinct failure is named (authentication, certificate, ...) once a minute.
        self._errors(error)

    def flush(self, timeout_s: float) -> int:
        """Send everything still buffered; returns how many frames were left undelivered."""
        deadline = time.monotonic() + timeout_s
        while (self.buffer or self.unacked_bytes) and time.monotonic() < deadline:
            self.pump(0.1)
        left = len(self.buffer) + len(self.producer)
        self.producer.flush(max(0.0, deadline - time.monotonic()))
        return left if self.buffer or len(self.producer) else 0
