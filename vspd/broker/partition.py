"""Everything the broker knows about one assigned partition, in one object.

- ``window``: the ordered window (admitted, uncommitted frames);
- ``backlog``: messages consumed but not admitted yet (never processed, so a
  crash never duplicates them), bounded in bytes;
- ``paused``: whether the consumer was told to stop fetching it;
- ``written``: source offsets whose results an earlier owner already wrote
  (learned from the results topic when the partition was assigned);
- ``waiting``: admitted slots whose call is not issued yet, in offset order.

Flow control keeps the prefetched data: a partition is paused only when its
backlog holds ``high_water_bytes`` and resumed at half of it, so that the
refetch after a resume (up to a second on some brokers) overlaps with work
already buffered instead of starving the processor.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass, field

from confluent_kafka import Message

from vspd.broker.window import PartitionWindow, Slot


@dataclass(eq=False)
class PartitionState:
    topic: str
    partition: int
    window: PartitionWindow
    backlog: collections.deque[Message] = field(default_factory=collections.deque)
    backlog_bytes: int = 0
    paused: bool = False
    written: set[int] = field(default_factory=set)
    waiting: collections.deque[Slot] = field(default_factory=collections.deque)

    @classmethod
    def assigned(cls, topic: str, partition: int) -> PartitionState:
        return cls(topic, partition, PartitionWindow(topic, partition))

    @property
    def key(self) -> tuple[str, int]:
        return (self.topic, self.partition)

    def buffer(self, message: Message) -> None:
        self.backlog.append(message)
        self.backlog_bytes += len(message.value() or b"")

    def next_message(self) -> Message:
        message = self.backlog.popleft()
        self.backlog_bytes -= len(message.value() or b"")
        return message

    def should_pause(self, high_water_bytes: int) -> bool:
        return not self.paused and self.backlog_bytes >= high_water_bytes

    def should_resume(self, high_water_bytes: int) -> bool:
        return self.paused and self.backlog_bytes <= high_water_bytes // 2

    def wait_for_call(self, slot: Slot) -> None:
        """Queue a slot for its call, keeping offset order (a retry goes back in its place)."""
        waiting = self.waiting
        if not waiting or waiting[-1].offset < slot.offset:
            waiting.append(slot)
            return
        index = 0
        while waiting[index].offset < slot.offset:
            index += 1
        waiting.insert(index, slot)
