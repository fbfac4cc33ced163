"""Errors of the processing broker."""

from __future__ import annotations

from vspd.errors import VspdError


class BrokerError(VspdError):
    """Root of the broker's errors."""


class ResultNotWrittenError(BrokerError):
    """Kafka refused a result for good: writing later ones would break the order."""
