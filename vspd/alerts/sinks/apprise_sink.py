"""apprise: any notification service apprise knows, when the optional package is installed."""

from __future__ import annotations

import importlib
import tempfile
from pathlib import Path
from typing import Any

from vspd.alerts.errors import AlertsError, DeliveryError
from vspd.alerts.sinks import clip_filename
from vspd.alerts.sinks.payload import clip_text
from vspd.alerts.store import ClipRecord, EventRecord
from vspd.config.model import AlertsConfig
from vspd.config.model import AppriseSink as AppriseConfig


class AppriseSink:
    def __init__(self, config: AppriseConfig, alerts: AlertsConfig) -> None:
        self.name = config.name
        try:
            apprise: Any = importlib.import_module("apprise")
        except ImportError:
            raise AlertsError(
                f"sink {config.name!r} is of type apprise, but the optional apprise package is not "
                "installed (pip install apprise)"
            ) from None
        self._apprise = apprise.Apprise()
        for url in config.urls:
            if not self._apprise.add(url.get_secret_value()):
                raise AlertsError(
                    f"sink {config.name!r}: apprise does not understand one of its urls"
                )
        self._alerts = alerts

    def deliver(self, event: EventRecord, snapshot: bytes | None) -> None:
        self._notify(
            f"{event.label} on {event.camera}", event.message, snapshot, f"{event.camera}.jpg"
        )

    def deliver_clip(self, event: EventRecord, clip: ClipRecord, video: bytes | None) -> None:
        text = clip_text(event, clip, self._alerts)
        title = f"Clip: {event.label} on {event.camera}"
        self._notify(title, text, video, clip_filename(event, clip))

    def _notify(self, title: str, body: str, data: bytes | None, filename: str) -> None:
        with tempfile.TemporaryDirectory() as directory:
            attach = None
            if data is not None:
                path = Path(directory) / filename
                path.write_bytes(data)
                attach = str(path)
            if not self._apprise.notify(body=body, title=title, attach=attach):
                raise DeliveryError("apprise could not notify every service")

    def close(self) -> None:
        pass
