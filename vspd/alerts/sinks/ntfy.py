"""ntfy: a push notification through an ntfy server (HTTP)."""

from __future__ import annotations

from vspd.alerts.sinks.http import post
from vspd.alerts.store import EventRecord
from vspd.config.model import AlertsConfig
from vspd.config.model import NtfySink as NtfyConfig

_PRIORITY = {"info": "3", "warning": "4", "critical": "5"}


class NtfySink:
    def __init__(self, config: NtfyConfig, alerts: AlertsConfig) -> None:
        self.name = config.name
        self._config = config
        self._alerts = alerts

    def deliver(self, event: EventRecord, snapshot: bytes | None) -> None:
        headers = {
            "Title": f"{event.label} on {event.camera}",
            "Priority": _PRIORITY.get(event.severity, "3"),
            "Tags": f"camera,{event.severity}",
            "X-Vspd-Event-Id": event.key,
        }
        if self._config.token is not None:
            headers["Authorization"] = f"Bearer {self._config.token.get_secret_value()}"
        body = event.message.encode()
        if snapshot is not None:
            # ntfy takes an attachment as the body; the text goes in a header.
            headers["Message"] = event.message
            headers["Filename"] = f"{event.camera}.jpg"
            body = snapshot
        post(self._config.url, body, headers, self._config.timeout_s)

    def close(self) -> None:
        pass
