"""Stand-in for picamera2.outputs."""

from __future__ import annotations

from typing import Any


class Output:
    def outputframe(
        self, frame: bytes, keyframe: bool = True, timestamp: Any = None, *_args: Any
    ) -> None:
        raise NotImplementedError
