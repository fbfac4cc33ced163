"""The ordered window of one partition: concurrent processing, in-order output, safe commits.

Every admitted message gets a slot, in offset order. Slots are processed in any
order, but their output is produced strictly from the head; a slot leaves the
window only when Kafka has acknowledged its output *and* a commit covering its
offset has been confirmed. So everything not yet committed is in the window,
and the window's size bounds what a crash makes the broker process again.

A slot's life: WAITING -> CALLING -> (WAITING again on a retry) -> READY ->
PRODUCED -> ACKED -> gone at the commit. ``DONE`` slots (already written by an
earlier owner of the partition) go straight to ACKED: only their offset is
committed. Every transition is checked: an invalid one raises
``WindowStateError`` instead of silently corrupting the order.

Each operation costs O(1) amortised: the head of what may be produced and the
acknowledged prefix are kept as positions, never found by scanning.
"""

from __future__ import annotations

import collections
import enum
from dataclasses import dataclass, field

from vspd import wire
from vspd.v1 import result_pb2


class SlotState(enum.Enum):
    WAITING = "waiting"  # admitted; its call is not issued yet (capacity, order or backoff)
    CALLING = "calling"
    READY = "ready"  # output known, not yet produced
    PRODUCED = "produced"  # handed to the producer, acknowledgements pending
    ACKED = "acked"  # every output acknowledged by Kafka (or nothing to write)


class WindowStateError(RuntimeError):
    """A transition the window's state machine does not allow: a bug, never input."""


@dataclass(frozen=True)
class Output:
    topic: str
    key: bytes | None
    value: bytes
    # What the output counts as once Kafka has it: a result status or a dead-letter stage.
    counts_as: str = ""
    partition: int | None = None  # None: the producer's partitioner decides
    headers: tuple[tuple[str, bytes], ...] = ()


@dataclass(eq=False)
class Slot:
    offset: int
    key: bytes | None
    value: bytes
    state: SlotState = SlotState.WAITING
    outputs: list[Output] = field(default_factory=list)  # until produced (then librdkafka's)
    pending_acks: int = 0
    attempts: int = 0
    not_before: float = 0.0  # monotonic time before which the call is not retried
    frame: wire.Frame | None = None  # the decoded frame while a call may still need it
    # A processor's answer still to be tracked and written (see ready_to_track).
    result: result_pb2.Result | None = None
    camera: str = ""  # the order key of per-camera ordered calls


class PartitionWindow:
    def __init__(self, topic: str, partition: int) -> None:
        self.topic = topic
        self.partition = partition
        self.slots: collections.deque[Slot] = collections.deque()
        # Slots not yet produced, in offset order: their head is the next to write.
        self._unproduced: collections.deque[Slot] = collections.deque()
        # How many slots at the front of `slots` are ACKED.
        self._acked_prefix = 0
        self._committing: int | None = None  # offset of the commit in flight
        self.committed: int | None = None  # last confirmed commit
        self.halted = False  # Kafka refused an output for good: nothing more is written

    def __len__(self) -> int:
        return len(self.slots)

    @property
    def next_offset(self) -> int | None:
        """The offset after the last admitted slot (None: nothing admitted yet)."""
        return self.slots[-1].offset + 1 if self.slots else self.committed

    def admit(self, offset: int, key: bytes | None, value: bytes) -> Slot:
        last = self.slots[-1].offset if self.slots else (self.committed or 0) - 1
        if offset <= last:
            raise WindowStateError(f"offset {offset} after {last}: out of order")
        slot = Slot(offset, key, value)
        self.slots.append(slot)
        self._unproduced.append(slot)
        return slot

    def calling(self, slot: Slot) -> None:
        self._expect(slot, SlotState.WAITING)
        slot.state = SlotState.CALLING
        slot.attempts += 1

    def retry(self, slot: Slot, not_before: float) -> None:
        self._expect(slot, SlotState.CALLING)
        slot.state = SlotState.WAITING
        slot.not_before = not_before

    def ready(self, slot: Slot, outputs: list[Output]) -> None:
        if slot.state not in (SlotState.WAITING, SlotState.CALLING):
            raise WindowStateError(f"slot {slot.offset} is {slot.state.value}, cannot be ready")
        slot.outputs = outputs
        slot.state = SlotState.READY
        slot.frame = None  # the frame is no longer needed: free it early

    def ready_to_track(self, slot: Slot, result: result_pb2.Result) -> None:
        """Ready, with an answer whose outputs are made when it is written (in order), by
        whoever tracks objects there; the frame stays until then."""
        frame = slot.frame
        self.ready(slot, [])
        slot.frame, slot.result = frame, result

    def already_written(self, slot: Slot) -> None:
        """An earlier owner wrote this slot's output: commit its offset, write nothing."""
        self.ready(slot, [])

    def producible(self) -> list[Slot]:
        """READY slots that may be produced now: the contiguous run at the head, in order.

        The caller produces each one's outputs and calls produced() for it, in this order.
        """
        run: list[Slot] = []
        if self.halted:
            return run
        for slot in self._unproduced:
            if slot.state is not SlotState.READY:
                break
            run.append(slot)
        return run

    def produced(self, slot: Slot) -> None:
        if not self._unproduced or self._unproduced[0] is not slot:
            raise WindowStateError(f"slot {slot.offset} produced out of order")
        self._expect(slot, SlotState.READY)
        self._unproduced.popleft()
        slot.state = SlotState.PRODUCED
        slot.pending_acks = len(slot.outputs)
        # librdkafka holds its own copy of each output until Kafka acknowledges it.
        slot.value, slot.outputs = b"", []
        if not slot.pending_acks:
            self._acked(slot)

    def acknowledged(self, slot: Slot) -> None:
        self._expect(slot, SlotState.PRODUCED)
        slot.pending_acks -= 1
        if slot.pending_acks <= 0:
            self._acked(slot)

    def _acked(self, slot: Slot) -> None:
        slot.state = SlotState.ACKED
        slots = self.slots
        while (
            self._acked_prefix < len(slots) and slots[self._acked_prefix].state is SlotState.ACKED
        ):
            self._acked_prefix += 1

    def halt(self) -> None:
        """Kafka refused an output for good: writing later ones would break the order."""
        self.halted = True

    def acked_to(self) -> int | None:
        """The offset after the acknowledged prefix: what may be committed (None: nothing)."""
        if not self._acked_prefix:
            return None
        return self.slots[self._acked_prefix - 1].offset + 1

    def commit_candidate(self) -> int | None:
        """The offset to commit (next to consume) if it advanced past what is committing, else None."""
        candidate = self.acked_to()
        if candidate is None or candidate in (self._committing, self.committed):
            return None
        return candidate

    def commit_started(self, offset: int) -> None:
        self._committing = offset

    def commit_confirmed(self, offset: int) -> None:
        acked_to = self.acked_to()
        if acked_to is None or offset > acked_to:
            # Not a commit of this window (a late confirmation from before a
            # reassignment): it cannot move anything here.
            if self._committing == offset:
                self._committing = None
            return
        if self.committed is not None and offset < self.committed:
            return  # an older commit's late confirmation
        self.committed = offset
        if self._committing is not None and self._committing <= offset:
            self._committing = None
        while self.slots and self.slots[0].offset < offset:
            self.slots.popleft()
            self._acked_prefix -= 1

    def commit_failed(self) -> None:
        self._committing = None

    def abandon_unproduced(self) -> int:
        """Drop slots whose output was not produced (on revocation); returns how many."""
        dropped = len(self._unproduced)
        for _ in range(dropped):
            self.slots.pop()  # the unproduced slots are exactly the tail
        self._unproduced.clear()
        return dropped

    def unacknowledged(self) -> int:
        return len(self.slots) - self._acked_prefix

    @staticmethod
    def _expect(slot: Slot, state: SlotState) -> None:
        if slot.state is not state:
            raise WindowStateError(
                f"slot {slot.offset} is {slot.state.value}, expected {state.value}"
            )
