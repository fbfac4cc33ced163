"""webhook: a JSON POST signed with HMAC-SHA256 over the exact body."""

from __future__ import annotations

import hashlib
import hmac

from vspd.alerts.sinks.http import post
from vspd.alerts.sinks.payload import event_json
from vspd.alerts.store import EventRecord
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
        body = event_json(event, self._alerts, separators=(",", ":")).encode()
        headers = {
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
