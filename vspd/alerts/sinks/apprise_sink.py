"""apprise: any notification service apprise knows, when the optional package is installed."""

from __future__ import annotations

import importlib
import tempfile
from pathlib import Path
from typing import Any

from vspd.alerts.errors import AlertsError, DeliveryError
from vspd.alerts.store import EventRecord
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
        title = f"{event.label} on {event.camera}"
        with tempfile.TemporaryDirectory() as directory:
            attach = None
            if snapshot is not None:
                path = Path(directory) / f"{event.camera}.jpg"
                path.write_bytes(snapshot)
                attach = str(path)
            if not self._apprise.notify(body=event.message, title=title, attach=attach):
                raise DeliveryError("apprise could not notify every service")

    def close(self) -> None:
        pass
