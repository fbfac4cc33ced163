"""What every source delivers, and small helpers they share."""

from __future__ import annotations

import struct
import time
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import numpy.typing as npt

Image = npt.NDArray[np.uint8]


@dataclass
class Captured:
    """One frame as it left the camera: pixels, or the camera's own JPEG (pass-through)."""

    capture_time_unix_ns: int
    capture_monotonic_ns: int
    image: Image | None = None
    jpeg: bytes | None = None
    width: int = 0
    height: int = 0
    metadata: dict[str, str] = field(default_factory=dict)

    @classmethod
    def now(cls, **fields: object) -> Captured:
        return cls(time.time_ns(), time.monotonic_ns(), **fields)  # type: ignore[arg-type]

    @property
    def size_hint(self) -> int:
        if self.jpeg is not None:
            return len(self.jpeg)
        return int(self.image.nbytes) if self.image is not None else 0


class FrameSource(Protocol):
    # Sources that produce frames on demand (file, synthetic) are paced by the
    # reader at the camera's fps; live ones deliver at their own rate.
    paced_by_reader: bool

    def open(self) -> None: ...

    def read(self) -> Captured: ...

    def close(self) -> None: ...


_SOF_MARKERS = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def jpeg_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from a JPEG's frame header, without decoding it."""
    if data[:2] != b"\xff\xd8":
        return None
    index = 2
    while index + 4 <= len(data):
        if data[index] != 0xFF:
            return None
        marker = data[index + 1]
        if marker == 0xFF:
            index += 1
            continue
        (length,) = struct.unpack(">H", data[index + 2 : index + 4])
        if marker in _SOF_MARKERS and index + 9 <= len(data):
            height, width = struct.unpack(">HH", data[index + 5 : index + 9])
            return int(width), int(height)
        index += 2 + length
    return None
