"""The root of every error vspd raises on purpose.

Each component has its own subclasses (``vspd.config.ConfigError``,
``vspd.capture.errors``, ...). ``retriable`` says whether trying the same thing
again later can succeed, so that loops decide by type, not by message.
"""

from __future__ import annotations


class VspdError(Exception):
    """Base class of vspd's own errors."""

    retriable: bool = False


class KafkaSetupError(VspdError):
    """The Kafka cluster refused or could not do what vspd needs to start."""

    retriable = True
