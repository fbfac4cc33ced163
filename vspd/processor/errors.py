"""Errors of the processor server; each names its gRPC status code itself.

Whether the broker tries a call again follows from the code
(``vspd.runtime.retry.RETRIABLE_GRPC_CODES``), so ``retriable`` is derived
from it and cannot disagree with the broker.
"""

from __future__ import annotations

from typing import ClassVar

import grpc

from vspd.errors import VspdError
from vspd.runtime.retry import RETRIABLE_GRPC_CODES


class ProcessorError(VspdError):
    """Root of the processor's errors: a bug or a failure inside (INTERNAL)."""

    code: ClassVar[grpc.StatusCode] = grpc.StatusCode.INTERNAL

    @property
    def retriable(self) -> bool:  # type: ignore[override]
        return self.code.name in RETRIABLE_GRPC_CODES


class InvalidFrameError(ProcessorError):
    """The frame can never be processed (undecodable image, wrong encoding): INVALID_ARGUMENT."""

    code = grpc.StatusCode.INVALID_ARGUMENT


class NotReadyError(ProcessorError):
    """The plug-in is still loading: UNAVAILABLE, callers retry."""

    code = grpc.StatusCode.UNAVAILABLE


class DeadlineExpiredError(ProcessorError):
    """The caller's deadline passed before the work started: it is not done."""

    code = grpc.StatusCode.DEADLINE_EXCEEDED


class PluginLoadError(ProcessorError):
    """The configured plug-in cannot be found or set up (model file missing, bad name)."""
