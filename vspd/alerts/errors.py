"""Errors of the alerts daemon."""

from __future__ import annotations

from vspd.errors import VspdError


class AlertsError(VspdError):
    """Root of the alerts daemon's errors."""


class DeliveryError(AlertsError):
    """A sink could not deliver an alert; `retriable` says whether to try again.

    `retry_after_s`: the receiver said when (HTTP 429/503 Retry-After); the
    next attempt waits at least that long, within retry_max_s.
    """

    def __init__(
        self, message: str, retriable: bool = True, retry_after_s: float | None = None
    ) -> None:
        super().__init__(message)
        self.retriable = retriable
        self.retry_after_s = retry_after_s
