"""What every source delivers, and small helpers they share."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:  # a camera that sends JPEG never needs NumPy (megabytes of a Pi's memory)
    import numpy as np
    import numpy.typing as npt

    Image = npt.NDArray[np.uint8]

# A network camera that sends nothing this long (connecting, or mid-stream with
# its connection open) is taken for gone: the read ends and the source reopens.
NETWORK_TIMEOUT_S = 10.0


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


class FrameSource(Protocol):
    # Sources that produce frames on demand (file, synthetic) are paced by the
    # reader at the camera's fps; live ones deliver at their own rate.
    paced_by_reader: bool

    def open(self) -> None: ...

    def read(self) -> Captured: ...

    def close(self) -> None: ...
