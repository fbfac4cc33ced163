"""What the capture daemon counts; the same numbers feed STATUS= and /metrics."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

SOURCE_STATES = ("connecting", "streaming", "reconnecting", "unsupported")
# corrupt: a frame the camera sent that is not an image (dropped, the stream goes on).
DROP_REASONS = ("queue_full", "buffer_full", "kafka_error", "corrupt")


class CaptureMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.captured = Counter(
            "vspd_capture_frames_captured", "Frames read from the camera", registry=registry
        )
        self.sent = Counter(
            "vspd_capture_frames_sent", "Frames acknowledged by Kafka", registry=registry
        )
        self.dropped = Counter(
            "vspd_capture_frames_dropped",
            "Frames dropped, by reason",
            ["reason"],
            registry=registry,
        )
        self.encode_seconds = Histogram(
            "vspd_capture_encode_seconds",
            "JPEG encoding time per frame",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.02, 0.04, 0.08, 0.16),
            registry=registry,
        )
        self.delivery_seconds = Histogram(
            "vspd_capture_delivery_seconds",
            "From capture to Kafka's acknowledgement",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=registry,
        )
        self.buffer_bytes = Gauge(
            "vspd_capture_buffer_bytes",
            "Encoded frames not yet acknowledged by Kafka",
            registry=registry,
        )
        self.source_state = Gauge(
            "vspd_capture_source_state",
            "1 for the source's current state",
            ["state"],
            registry=registry,
        )
        self.reconnects = Counter(
            "vspd_capture_source_reconnects", "Source reopen attempts", registry=registry
        )
        self.thread_restarts = Counter(
            "vspd_capture_reader_restarts",
            "Camera read threads found dead and started again",
            registry=registry,
        )
        for reason in DROP_REASONS:
            self.dropped.labels(reason)

    def set_state(self, state: str) -> None:
        for name in SOURCE_STATES:
            self.source_state.labels(name).set(1 if name == state else 0)
