"""Glue for a daemon's main(): signals, systemd notify, metrics endpoint, lifecycle."""

from __future__ import annotations

import structlog
from prometheus_client import CollectorRegistry

from vspd.config import VspdConfig
from vspd.runtime.lifecycle import Daemon, Lifecycle, StopFlag, run_daemon
from vspd.runtime.metrics import MetricsServer
from vspd.runtime.notify import SystemdNotifier

log = structlog.get_logger(__name__)


def serve(
    daemon: Daemon,
    stop: StopFlag,
    config: VspdConfig,
    registry: CollectorRegistry,
    metrics_port: int,
) -> int:
    notifier = SystemdNotifier()
    lifecycle = Lifecycle(
        notifier, daemon.status, daemon.readiness, alive=getattr(daemon, "alive", None)
    )
    metrics = None
    if config.metrics.enabled:
        try:
            metrics = MetricsServer(
                registry,
                lifecycle.seconds_since_progress,
                config.metrics.host,
                metrics_port,
                lifecycle.readiness,
            ).start()
        except OSError as exc:
            # Metrics are for operators; a taken port must not stop the cameras.
            log.error(  # noqa: TRY400 - the reason is enough, no traceback
                "metrics endpoint unavailable", port=metrics_port, error=exc.strerror
            )
    try:
        return run_daemon(daemon, stop, lifecycle)
    finally:
        if metrics is not None:
            metrics.stop()
