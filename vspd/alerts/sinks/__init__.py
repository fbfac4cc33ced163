"""Where alerts go. Each sink delivers one event at a time and raises DeliveryError on failure.

An alert goes out at once with its snapshot (`deliver`); its clip follows when
it is made (`deliver_clip`), with the same event id.
"""

from __future__ import annotations

from typing import Protocol

from vspd.alerts.store import ClipRecord, EventRecord
from vspd.config.model import AlertsConfig, SinkConfig


class Sink(Protocol):
    name: str

    def deliver(self, event: EventRecord, snapshot: bytes | None) -> None: ...

    def deliver_clip(self, event: EventRecord, clip: ClipRecord, video: bytes | None) -> None: ...

    def close(self) -> None: ...


def build_sink(config: SinkConfig, alerts: AlertsConfig) -> Sink:
    # Imported on use: apprise is optional, paho and smtplib are only needed when configured.
    if config.type == "webhook":
        from vspd.alerts.sinks.webhook import WebhookSink

        return WebhookSink(config, alerts)
    if config.type == "mqtt":
        from vspd.alerts.sinks.mqtt import MqttSink

        return MqttSink(config, alerts)
    if config.type == "email":
        from vspd.alerts.sinks.email import EmailSink

        return EmailSink(config, alerts)
    if config.type == "ntfy":
        from vspd.alerts.sinks.ntfy import NtfySink

        return NtfySink(config, alerts)
    if config.type == "apprise":
        from vspd.alerts.sinks.apprise_sink import AppriseSink

        return AppriseSink(config, alerts)
    from vspd.alerts.sinks.log import LogSink

    return LogSink(config)


def clip_filename(event: EventRecord, clip: ClipRecord) -> str:
    suffix = ".mp4" if clip.content_type == "video/mp4" else ".webm"
    return f"{event.camera}{suffix}"
