"""Errors of the alerts daemon."""

from __future__ import annotations

from vspd.errors import VspdError


class AlertsError(VspdError):
    """Root of the alerts daemon's errors."""


class DeliveryError(AlertsError):
    """A sink could not deliver an alert; `retriable` says whether to try again."""

    def __init__(self, message: str, retriable: bool = True) -> None:
        super().__init__(message)
        self.retriable = retriable
