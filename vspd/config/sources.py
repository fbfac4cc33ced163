"""Camera source URIs: parsed and checked at config time, before anything starts.

``picamera2:0``, ``v4l2:/dev/video0``, ``rtsp://...``, ``http://...`` (MJPEG),
``file:PATH?loop=true``, ``synthetic:?objects=3&speed=0.25&size=0.15&seed=1``.
Options ride in the query string so that one string says everything about a
source; unknown options are errors, like unknown config keys.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import parse_qsl, urlsplit

from vspd.urls import redact_url

SourceKind = Literal["picamera2", "v4l2", "rtsp", "http", "file", "synthetic"]

_SCHEMES: dict[str, SourceKind] = {
    "picamera2": "picamera2",
    "v4l2": "v4l2",
    "rtsp": "rtsp",
    "rtsps": "rtsp",
    "http": "http",
    "https": "http",
    "file": "file",
    "synthetic": "synthetic",
}

# Options each kind accepts, with the type their value must parse as.
_OPTIONS: dict[SourceKind, dict[str, type]] = {
    "picamera2": {},
    "v4l2": {"fourcc": str},
    "rtsp": {"transport": str},
    "http": {},
    "file": {"loop": bool},
    "synthetic": {"objects": int, "speed": float, "size": float, "seed": int, "noise": bool},
}

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


@dataclass(frozen=True)
class SourceSpec:
    """A parsed source URI."""

    uri: str
    kind: SourceKind
    # The device index, device path, file path or network URL (without vspd options).
    target: str
    options: dict[str, str | int | float | bool] = field(default_factory=dict)

    def option(self, name: str, default: str | int | float | bool) -> str | int | float | bool:
        return self.options.get(name, default)


def _convert(kind: SourceKind, name: str, raw: str) -> str | int | float | bool:
    wanted = _OPTIONS[kind].get(name)
    if wanted is None:
        known = ", ".join(sorted(_OPTIONS[kind])) or "none"
        raise ValueError(f"unknown option {name!r} for a {kind} source (known: {known})")
    if wanted is bool:
        if raw.lower() in _TRUE:
            return True
        if raw.lower() in _FALSE:
            return False
        raise ValueError(f"option {name!r} must be true or false, not {raw!r}")
    try:
        value: str | int | float = wanted(raw)
    except ValueError:
        raise ValueError(f"option {name!r} must be {wanted.__name__}, not {raw!r}") from None
    return value


def parse_source(uri: str) -> SourceSpec:
    """Parse a camera source URI; ValueError with a specific reason when it is wrong.

    Reasons never repeat a network URL as written (it may hold a password).
    """
    scheme, sep, rest = uri.partition(":")
    if not sep or scheme.lower() not in _SCHEMES:
        known = ", ".join(f"{s}:" for s in sorted(set(_SCHEMES)))
        shown = redact_url(uri) if "://" in uri else repr(uri[:60])
        raise ValueError(f"source {shown} has no known scheme (one of {known})")
    kind = _SCHEMES[scheme.lower()]
    if any(ord(character) < 32 or ord(character) == 127 for character in uri):
        raise ValueError("source has control characters (CR, LF, ...)")
    if kind in ("rtsp", "http"):
        try:
            parts = urlsplit(uri)
            hostname, _port = parts.hostname, parts.port
        except ValueError as exc:
            raise ValueError(f"source {redact_url(uri)} is not a valid URL: {exc}") from None
        if not hostname:
            raise ValueError(f"source {redact_url(uri)} has no host")
        return SourceSpec(uri=uri, kind=kind, target=uri)
    body, _, query = rest.partition("?")
    options = {
        name: _convert(kind, name, raw) for name, raw in parse_qsl(query, strict_parsing=False)
    }
    if kind == "picamera2":
        if not body.isdigit():
            raise ValueError(f"source {uri!r}: picamera2 needs a camera number, e.g. picamera2:0")
    elif kind == "v4l2":
        if not (body.startswith("/dev/") or body.isdigit()):
            raise ValueError(f"source {uri!r}: v4l2 needs a device, e.g. v4l2:/dev/video0")
    elif kind == "file":
        if not body:
            raise ValueError(f"source {uri!r}: file needs a path, e.g. file:/srv/clip.mp4")
    elif kind == "synthetic":
        if body:
            raise ValueError(
                f"source {uri!r}: synthetic takes only options, e.g. synthetic:?objects=3"
            )
        _check_synthetic(uri, options)
    return SourceSpec(uri=uri, kind=kind, target=body, options=options)


def _check_synthetic(uri: str, options: dict[str, str | int | float | bool]) -> None:
    objects = options.get("objects", 3)
    if not isinstance(objects, int) or not 0 <= objects <= 64:
        raise ValueError(f"source {uri!r}: objects must be between 0 and 64")
    size = options.get("size", 0.15)
    if not isinstance(size, float | int) or not 0.01 <= size <= 0.9:
        raise ValueError(
            f"source {uri!r}: size must be between 0.01 and 0.9 (fraction of the frame)"
        )
    speed = options.get("speed", 0.25)
    if not isinstance(speed, float | int) or not 0 <= speed <= 10:
        raise ValueError(
            f"source {uri!r}: speed must be between 0 and 10 (frame widths per second)"
        )
