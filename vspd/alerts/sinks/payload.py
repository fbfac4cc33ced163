"""The JSON an alert is described by, shared by webhook, MQTT and ntfy."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from vspd.alerts.store import EventRecord
from vspd.config.model import AlertsConfig


def snapshot_url(alerts: AlertsConfig, event: EventRecord) -> str:
    if not event.snapshot or not alerts.snapshot_base_url:
        return ""
    return alerts.snapshot_base_url.rstrip("/") + "/" + event.snapshot.removeprefix("snapshots/")


def event_payload(event: EventRecord, alerts: AlertsConfig) -> dict[str, Any]:
    return {
        "event_id": event.key,
        "rule": event.rule,
        "camera": event.camera,
        "label": event.label,
        "confidence": round(event.confidence, 4),
        "count": event.count,
        "severity": event.severity,
        "message": event.message,
        "time": datetime.fromtimestamp(event.time_ns / 1e9, UTC).isoformat(timespec="milliseconds"),
        "session": event.session,
        "seq": event.seq,
        "snapshot_url": snapshot_url(alerts, event),
        "detections": event.detections,
    }
