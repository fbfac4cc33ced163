"""webhook: a JSON POST signed with HMAC-SHA256 over the exact body."""

from __future__ import annotations

import hashlib
import hmac

from vspd.alerts.sinks.http import post
from vspd.alerts.sinks.payload import clip_json, event_json
from vspd.alerts.store import ClipRecord, EventRecord
from vspd.config.model import AlertsConfig
from vspd.config.model import WebhookSink as WebhookConfig


def signature(secret: bytes, body: bytes) -> str:
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


class WebhookSink:
    def __init__(self, config: WebhookConfig, alerts: AlertsConfig) -> None:
        self.name = config.name
        self._config = config
        self._alerts = alerts

    def deliver(self, event: EventRecord, snapshot: bytes | None) -> None:
        self._post(event, event_json(event, self._alerts, separators=(",", ":")).encode(), "alert")

    def deliver_clip(self, event: EventRecord, clip: ClipRecord, video: bytes | None) -> None:
        """A second POST, `"type": "clip_ready"`, with the alert's X-Vspd-Event-Id."""
        body = clip_json(event, clip, self._alerts, separators=(",", ":")).encode()
        self._post(event, body, "clip_ready")

    def _post(self, event: EventRecord, body: bytes, delivery: str) -> None:
        headers = {
            # A receiver drops repeats by (X-Vspd-Event-Id, X-Vspd-Delivery).
            "X-Vspd-Delivery": delivery,
            "Content-Type": "application/json",
            "User-Agent": "vspd",
            # Stable per event: lets the receiver drop a repeat after an ambiguous failure.
            "X-Vspd-Event-Id": event.key,
        }
        if self._config.secret is not None:
            secret = self._config.secret.get_secret_value().encode()
            headers[self._config.signature_header] = signature(secret, body)
        post(self._config.url, body, headers, self._config.timeout_s)

    def close(self) -> None:
        pass
