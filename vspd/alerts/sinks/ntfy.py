"""ntfy: a push notification through an ntfy server (HTTP)."""

from __future__ import annotations

from vspd.alerts.sinks import clip_filename
from vspd.alerts.sinks.http import post
from vspd.alerts.sinks.payload import clip_text, clip_url
from vspd.alerts.store import ClipRecord, EventRecord
from vspd.config.model import AlertsConfig
from vspd.config.model import NtfySink as NtfyConfig

_PRIORITY = {"info": "3", "warning": "4", "critical": "5"}
# ntfy.sh takes attachments up to 15 MB; a bigger clip goes as its link.
ATTACHMENT_MAX_BYTES = 15 * 1024 * 1024


class NtfySink:
    def __init__(self, config: NtfyConfig, alerts: AlertsConfig) -> None:
        self.name = config.name
        self._config = config
        self._alerts = alerts

    def _headers(self, event: EventRecord, title: str, priority: str) -> dict[str, str]:
        headers = {
            "Title": title,
            "Priority": priority,
            "Tags": f"camera,{event.severity}",
            "X-Vspd-Event-Id": event.key,
        }
        if self._config.token is not None:
            headers["Authorization"] = f"Bearer {self._config.token.get_secret_value()}"
        return headers

    def deliver_clip(self, event: EventRecord, clip: ClipRecord, video: bytes | None) -> None:
        """The clip as an attachment (its link where it is too big), quietly: the alert rang."""
        headers = self._headers(event, f"Clip: {event.label} on {event.camera}", "2")
        link = clip_url(self._alerts, clip)
        if link:
            headers["Click"] = link
        text = clip_text(event, clip, self._alerts)
        body = text.encode()
        if video is not None and len(video) <= ATTACHMENT_MAX_BYTES:
            headers["Message"] = text
            headers["Filename"] = clip_filename(event, clip)
            body = video
        post(self._config.url, body, headers, self._config.timeout_s)

    def deliver(self, event: EventRecord, snapshot: bytes | None) -> None:
        headers = self._headers(
            event, f"{event.label} on {event.camera}", _PRIORITY.get(event.severity, "3")
        )
        body = event.message.encode()
        if snapshot is not None:
            # ntfy takes an attachment as the body; the text goes in a header.
            headers["Message"] = event.message
            headers["Filename"] = f"{event.camera}.jpg"
            body = snapshot
        post(self._config.url, body, headers, self._config.timeout_s)

    def close(self) -> None:
        pass
