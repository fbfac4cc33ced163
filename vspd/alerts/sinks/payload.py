"""The JSON an alert is described by, shared by webhook, MQTT and ntfy."""

from __future__ import annotations

import json
import math
import re
from datetime import UTC, datetime
from typing import Any

from vspd.alerts.store import ClipRecord, EventRecord
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


def clip_url(alerts: AlertsConfig, clip: ClipRecord) -> str:
    if not clip.path or not alerts.clip_base_url:
        return ""
    return alerts.clip_base_url.rstrip("/") + "/" + clip.path.removeprefix("clips/")


def _iso(time_ns: int | None) -> str | None:
    if time_ns is None:
        return None
    return datetime.fromtimestamp(time_ns / 1e9, UTC).isoformat(timespec="milliseconds")


def clip_payload(event: EventRecord, clip: ClipRecord, alerts: AlertsConfig) -> dict[str, Any]:
    """The follow-up of an alert: its clip (same event_id), what it covers, what it lacks."""
    first, last = clip.first_ns, clip.last_ns
    return {
        "type": "clip_ready",
        "event_id": event.key,
        "rule": event.rule,
        "camera": event.camera,
        "message": event.message,
        "clip_url": clip_url(alerts, clip),
        "clip_file": clip.path,
        "content_type": clip.content_type,
        "bytes": clip.bytes,
        "frames": clip.frames or 0,
        "start": _iso(clip.start_ns),
        "end": _iso(clip.end_ns),
        "first_frame": _iso(first),
        "last_frame": _iso(last),
        "duration_s": round((last - first) / 1e9, 2) if first and last else 0.0,
        "missing": clip.note or None,
    }


def clip_json(event: EventRecord, clip: ClipRecord, alerts: AlertsConfig, **dumps: Any) -> str:
    return json.dumps(_finite(clip_payload(event, clip, alerts)), allow_nan=False, **dumps)


def clip_text(event: EventRecord, clip: ClipRecord, alerts: AlertsConfig) -> str:
    """One line for people: which alert, how long, what is missing, where to watch it."""
    payload = clip_payload(event, clip, alerts)
    text = f"Clip of: {event.message} ({payload['duration_s']:.0f} s, {payload['frames']} frames)"
    if clip.note:
        text += f"; {clip.note}"
    if payload["clip_url"]:
        text += f"\n{payload['clip_url']}"
    return text


def _finite(value: Any) -> Any:
    """NaN and infinities become null: JSON has no such numbers, receivers would refuse the body."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(item) for item in value]
    return value


def event_json(
    event: EventRecord, alerts: AlertsConfig, extra: dict[str, Any] | None = None, **dumps: Any
) -> str:
    """The payload (and `extra` keys first) as strict JSON (allow_nan=False): what JSON sinks send."""
    payload = {**(extra or {}), **event_payload(event, alerts)}
    return json.dumps(_finite(payload), allow_nan=False, **dumps)


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def header_value(text: str) -> str:
    """A value safe for an HTTP header: no control characters (CR/LF), Latin-1 only, bounded."""
    cleaned = _CONTROL.sub(" ", text)[:1024]
    return cleaned.encode("latin-1", "replace").decode("latin-1")
