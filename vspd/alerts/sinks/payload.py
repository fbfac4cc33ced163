"""The JSON an alert is described by, shared by webhook, MQTT and ntfy."""

from __future__ import annotations

import json
import math
import re
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
        # Rules over objects: which object, how long it stayed, which way it crossed.
        "track_id": event.track_id if event.track_id >= 0 else None,
        "dwell_s": round(event.dwell_s, 1) if event.dwell_s is not None else None,
        "crossed_to": event.crossed_to or None,
    }


def _finite(value: Any) -> Any:
    """NaN and infinities become null: JSON has no such numbers, receivers would refuse the body."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(item) for item in value]
    return value


def event_json(event: EventRecord, alerts: AlertsConfig, **dumps: Any) -> str:
    """The payload as strict JSON (allow_nan=False): what every JSON sink sends."""
    return json.dumps(_finite(event_payload(event, alerts)), allow_nan=False, **dumps)


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def header_value(text: str) -> str:
    """A value safe for an HTTP header: no control characters (CR/LF), Latin-1 only, bounded."""
    cleaned = _CONTROL.sub(" ", text)[:1024]
    return cleaned.encode("latin-1", "replace").decode("latin-1")
