"""The processor's Prometheus metrics (served on metrics.processor_port)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class ProcessorMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.calls = Counter(
            "vspd_processor_calls",
            "Calls by outcome (grpc status code)",
            ["code"],
            registry=registry,
        )
        self.latency = Histogram(
            "vspd_processor_seconds",
            "Time in the plug-in per frame",
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.in_flight = Gauge(
            "vspd_processor_in_flight", "Calls being processed", registry=registry
        )
        self.tls_refused = Counter(
            "vspd_processor_tls_refused",
            "TLS handshakes refused, by what the client got wrong",
            ["reason"],
            registry=registry,
        )
