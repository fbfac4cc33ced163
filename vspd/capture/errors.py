"""Errors of the capture daemon."""

from __future__ import annotations

from vspd.errors import VspdError


class CaptureError(VspdError):
    """Root of the capture daemon's errors."""


class SourceUnavailableError(CaptureError):
    """The camera cannot be opened or stopped delivering; reopened with backoff."""

    retriable = True


class SourceEndedError(SourceUnavailableError):
    """A file source reached its end (without loop): reopened like any other failure."""


class CorruptFrameError(CaptureError):
    """One frame the camera sent is unusable (not a JPEG): dropped and counted, the stream goes on."""

    retriable = True


class SourceNotSupportedError(CaptureError):
    """This machine cannot run this kind of source at all (e.g. picamera2 off a Pi)."""
