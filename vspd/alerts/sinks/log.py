"""log: the alert as a structured log line (the journal, under systemd)."""

from __future__ import annotations

import structlog

from vspd.alerts.store import ClipRecord, EventRecord
from vspd.config.model import LogSink as LogConfig

log = structlog.get_logger("vspd.alerts.alert")


class LogSink:
    def __init__(self, config: LogConfig) -> None:
        self.name = config.name

    def deliver(self, event: EventRecord, snapshot: bytes | None) -> None:
        log.warning(
            "alert",
            event_id=event.key,
            rule=event.rule,
            camera=event.camera,
            label=event.label,
            confidence=round(event.confidence, 3),
            severity=event.severity,
            message=event.message,
            snapshot=event.snapshot,
        )

    def deliver_clip(self, event: EventRecord, clip: ClipRecord, video: bytes | None) -> None:
        log.info(
            "alert clip",
            event_id=event.key,
            clip=clip.path,
            frames=clip.frames,
            missing=clip.note or None,
        )

    def close(self) -> None:
        pass
