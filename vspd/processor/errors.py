"""Errors of the processor server; each maps to one gRPC status code."""

from __future__ import annotations

from vspd.errors import VspdError


class ProcessorError(VspdError):
    """Root of the processor's errors."""


class InvalidFrameError(ProcessorError):
    """The frame can never be processed (undecodable image, wrong encoding): INVALID_ARGUMENT."""


class PluginLoadError(ProcessorError):
    """The configured plug-in cannot be found or set up (model file missing, bad name)."""
