"""What the alerts daemon counts."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class AlertsMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.results = Counter("vspd_alerts_results", "Results consumed", registry=registry)
        self.duplicates = Counter(
            "vspd_alerts_duplicate_results",
            "Results skipped: replayed after a restart, or written twice upstream",
            ["reason"],
            registry=registry,
        )
        for reason in ("replayed", "duplicate"):
            self.duplicates.labels(reason)
        self.bad = Counter(
            "vspd_alerts_bad_results", "Messages that are not a Result", registry=registry
        )
        self.events = Counter(
            "vspd_alerts_events", "Alerts raised, by rule", ["rule"], registry=registry
        )
        self.not_notified = Counter(
            "vspd_alerts_not_notified",
            "Alerts stored and reported but sent to no sink, by rule and reason",
            ["rule", "reason"],
            registry=registry,
        )
        self.delivered = Counter(
            "vspd_alerts_delivered", "Deliveries made, by sink", ["sink"], registry=registry
        )
        self.failed = Counter(
            "vspd_alerts_delivery_failures",
            "Failed delivery attempts",
            ["sink", "outcome"],
            registry=registry,
        )
        self.pending = Gauge(
            "vspd_alerts_pending", "Deliveries waiting, by sink", ["sink"], registry=registry
        )
        self.assigned = Gauge(
            "vspd_alerts_assigned_partitions",
            "Partitions of the results topic assigned to this daemon (0: waiting for assignment)",
            registry=registry,
        )
        self.clips = Counter(
            "vspd_alerts_clips",
            "Event clips, by outcome (made, failed, skipped: too many waiting)",
            ["outcome"],
            registry=registry,
        )
        for outcome in ("made", "failed", "skipped"):
            self.clips.labels(outcome)
        self.clips_removed = Counter(
            "vspd_alerts_clips_removed",
            "Clip files removed, oldest first, to stay under clips_max_bytes",
            registry=registry,
        )
        # The main loop's work per batch (store transaction, snapshots, commit):
        # what keeps it from consuming; reports render on their own thread.
        self.batch_seconds = Histogram(
            "vspd_alerts_batch_seconds",
            "Time to record one batch of results",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
            registry=registry,
        )
