"""What the broker counts; the same numbers feed STATUS= and /metrics."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class BrokerMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.in_flight = Gauge(
            "vspd_broker_calls_in_flight", "gRPC calls in flight", registry=registry
        )
        self.batch_frames = Histogram(
            "vspd_broker_batch_frames",
            "Frames per ProcessBatch call (frames called alone are not counted)",
            buckets=(2, 4, 8, 16, 32, 64, 128, 256),
            registry=registry,
        )
        self.assigned = Gauge(
            "vspd_broker_assigned_partitions",
            "Partitions of the frames topic assigned to this broker (0: waiting for assignment)",
            registry=registry,
        )
        self.window = Gauge(
            "vspd_broker_uncommitted_frames",
            "Frames consumed but not yet committed",
            registry=registry,
        )
        self.buffered_bytes = Gauge(
            "vspd_broker_buffered_bytes",
            "Bytes of frames consumed and waiting for room in a window (max_buffered_bytes)",
            registry=registry,
        )
        self.processor_seconds = Histogram(
            "vspd_broker_processor_seconds",
            "Processor call latency",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=registry,
        )
        # Where a capture->result latency goes: the frame's age when its call starts
        # (camera, encoding, Kafka and any backlog), then the call (processor_seconds).
        self.frame_age = Histogram(
            "vspd_broker_frame_age_seconds",
            "Age of a frame (since its capture) when its first processor call starts",
            buckets=(0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
            registry=registry,
        )
        self.results = Counter(
            "vspd_broker_results", "Results written, by status", ["status"], registry=registry
        )
        self.retries = Counter(
            "vspd_broker_retries",
            "Processor calls retried, by gRPC code",
            ["code"],
            registry=registry,
        )
        self.dead_letters = Counter(
            "vspd_broker_dead_letters",
            "Messages sent to the dead-letter topic",
            ["stage"],
            registry=registry,
        )
        self.lag = Gauge(
            "vspd_broker_consumer_lag",
            "Frames behind the end of the partition",
            ["partition"],
            registry=registry,
        )
        self.processor_up = Gauge(
            "vspd_broker_processor_up",
            "1 when the last processor call got an answer",
            registry=registry,
        )
        for status in ("ok", "failed", "skipped"):
            self.results.labels(status)
        for stage in ("broker.decode", "broker.processor", "broker.write"):
            self.dead_letters.labels(stage)
