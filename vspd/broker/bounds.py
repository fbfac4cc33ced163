"""A bounded run of the broker (`vspd replay`): which frames, from where to where.

Per partition of the frames topic, the first offset to read (where the period
starts, by time) and the offset to stop before (where it has surely ended);
between them, the frames of the period's cameras are processed and every
other message is passed over (acknowledged, no result).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from vspd.v1 import frame_pb2


@dataclass(frozen=True)
class Bounds:
    since_ns: int
    until_ns: int
    start: dict[int, int]  # partition -> first offset of the period
    stop: dict[int, int]  # partition -> the offset after it
    cameras: frozenset[str] = field(default_factory=frozenset)  # empty: every camera

    def wants(self, frame: frame_pb2.Frame) -> bool:
        if self.cameras and frame.camera_id not in self.cameras:
            return False
        return self.since_ns <= frame.capture_time_unix_ns < self.until_ns

    def beyond(self, partition: int, offset: int) -> bool:
        return offset >= self.stop.get(partition, 0)

    def total(self) -> int:
        """Messages in the period's offset ranges (all cameras)."""
        return sum(max(0, self.stop[p] - self.start.get(p, 0)) for p in self.stop)
