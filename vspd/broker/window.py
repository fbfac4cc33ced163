"""The ordered window of one partition: concurrent processing, in-order output, safe commits.

Every consumed message gets a slot, in offset order. Slots are processed in any
order, but their output is produced strictly from the head; a slot leaves the
window only when Kafka has acknowledged its output *and* a commit covering its
offset has been confirmed. So everything not yet committed is in the window,
and the window's size bounds what a crash makes the broker process again.
"""

from __future__ import annotations

import collections
import enum
from collections.abc import Iterator
from dataclasses import dataclass, field


class SlotState(enum.Enum):
    WAITING = "waiting"  # admitted; its call is not issued yet (capacity or backoff)
    CALLING = "calling"
    READY = "ready"  # output known, not yet produced
    PRODUCED = "produced"  # handed to the producer, acknowledgements pending
    ACKED = "acked"  # every output acknowledged by Kafka


@dataclass(frozen=True)
class Output:
    topic: str
    key: bytes | None
    value: bytes
    # What the output counts as once Kafka has it: a result status or a dead-letter stage.
    counts_as: str = ""


@dataclass
class Slot:
    offset: int
    key: bytes | None
    value: bytes
    state: SlotState = SlotState.WAITING
    outputs: list[Output] = field(default_factory=list)
    pending_acks: int = 0
    attempts: int = 0
    not_before: float = 0.0  # monotonic time before which the call is not retried
    payload: object = None  # the decoded frame, for the call


class PartitionWindow:
    def __init__(self, topic: str, partition: int) -> None:
        self.topic = topic
        self.partition = partition
        self.slots: collections.deque[Slot] = collections.deque()
        self._committing: int | None = None  # offset of the commit in flight
        self.committed: int | None = None  # last confirmed commit

    def __len__(self) -> int:
        return len(self.slots)

    def admit(self, offset: int, key: bytes | None, value: bytes) -> Slot:
        if self.slots and offset <= self.slots[-1].offset:
            raise ValueError(f"offset {offset} after {self.slots[-1].offset}: out of order")
        slot = Slot(offset, key, value)
        self.slots.append(slot)
        return slot

    def waiting(self) -> Iterator[Slot]:
        return (slot for slot in self.slots if slot.state is SlotState.WAITING)

    def calling(self) -> int:
        return sum(1 for slot in self.slots if slot.state is SlotState.CALLING)

    def producible(self) -> Iterator[Slot]:
        """READY slots that may be produced now: only a contiguous run behind the produced head."""
        for slot in self.slots:
            if slot.state in (SlotState.PRODUCED, SlotState.ACKED):
                continue
            if slot.state is not SlotState.READY:
                return
            yield slot

    def ready(self, slot: Slot, outputs: list[Output]) -> None:
        slot.outputs = outputs
        slot.state = SlotState.READY
        slot.payload = None  # the frame is no longer needed: free it early

    def produced(self, slot: Slot) -> None:
        slot.state = SlotState.PRODUCED
        slot.pending_acks = len(slot.outputs)
        slot.value = b""
        if not slot.outputs:
            slot.state = SlotState.ACKED

    @staticmethod
    def acknowledged(slot: Slot) -> None:
        slot.pending_acks -= 1
        if slot.pending_acks <= 0:
            slot.state = SlotState.ACKED
            slot.outputs = []

    def commit_candidate(self) -> int | None:
        """The offset to commit (next to consume) if it advanced, else None."""
        candidate = None
        for slot in self.slots:
            if slot.state is not SlotState.ACKED:
                break
            candidate = slot.offset + 1
        if candidate is None or candidate in (self._committing, self.committed):
            return None
        return candidate

    def commit_started(self, offset: int) -> None:
        self._committing = offset

    def commit_confirmed(self, offset: int) -> None:
        self.committed = offset
        if self._committing is not None and self._committing <= offset:
            self._committing = None
        while self.slots and self.slots[0].offset < offset:
            self.slots.popleft()

    def commit_failed(self) -> None:
        self._committing = None

    def abandon_unproduced(self) -> int:
        """Drop slots whose output was not produced (on revocation); returns how many."""
        kept = [s for s in self.slots if s.state in (SlotState.PRODUCED, SlotState.ACKED)]
        dropped = len(self.slots) - len(kept)
        self.slots = collections.deque(kept)
        return dropped
