"""The partition window's state machine alone: transitions, and properties over random histories."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vspd.broker.partition import PartitionState
from vspd.broker.window import Output, PartitionWindow, Slot, SlotState, WindowStateError

OUT = Output("results", b"k", b"v")


def admitted(window: PartitionWindow, count: int, first: int = 0) -> list[Slot]:
    return [window.admit(first + i, b"k", b"v") for i in range(count)]


def test_output_is_produced_only_from_the_head_in_offset_order() -> None:
    window = PartitionWindow("frames", 0)
    a, b, c = admitted(window, 3)
    for slot in (a, b, c):
        window.calling(slot)
    window.ready(c, [OUT])
    assert list(window.producible()) == []  # c waits for a and b
    window.ready(a, [OUT])
    assert list(window.producible()) == [a]
    window.produced(a)
    window.ready(b, [OUT])
    heads = []
    for slot in window.producible():
        window.produced(slot)
        heads.append(slot)
    assert heads == [b, c]


def test_a_slot_leaves_only_after_ack_and_a_confirmed_commit() -> None:
    window = PartitionWindow("frames", 0)
    (a,) = admitted(window, 1)
    window.calling(a)
    window.ready(a, [OUT, OUT])  # a dead letter and a result
    window.produced(a)
    assert window.commit_candidate() is None
    window.acknowledged(a)
    assert window.commit_candidate() is None  # one output still unacknowledged
    window.acknowledged(a)
    assert window.commit_candidate() == 1
    window.commit_started(1)
    assert window.commit_candidate() is None  # not twice while in flight
    assert len(window) == 1
    window.commit_confirmed(1)
    assert len(window) == 0
    assert window.committed == 1


def test_a_produced_slot_keeps_neither_its_frame_nor_its_outputs() -> None:
    """Once produced, librdkafka holds the outputs' bytes until Kafka acknowledges them; the
    window waiting for those acknowledgements must not hold the frame or a second copy."""
    window = PartitionWindow("frames", 0)
    (a,) = admitted(window, 1)
    window.calling(a)
    window.ready(a, [OUT, OUT])
    window.produced(a)
    assert (a.value, a.outputs, a.pending_acks) == (b"", [], 2)
    window.acknowledged(a)
    assert a.state is SlotState.PRODUCED  # still one acknowledgement to come
    window.acknowledged(a)
    assert window.commit_candidate() == 1


def test_invalid_transitions_are_refused() -> None:
    window = PartitionWindow("frames", 0)
    a, b = admitted(window, 2)
    with pytest.raises(WindowStateError):
        window.acknowledged(a)  # never produced
    with pytest.raises(WindowStateError):
        window.retry(a, 0.0)  # not calling
    window.calling(a)
    with pytest.raises(WindowStateError):
        window.calling(a)  # twice
    window.ready(b, [OUT])
    with pytest.raises(WindowStateError):
        window.produced(b)  # not the head
    with pytest.raises(WindowStateError):
        window.admit(1, b"k", b"v")  # offsets only grow


def test_already_written_slots_commit_without_output() -> None:
    window = PartitionWindow("frames", 0)
    a, b = admitted(window, 2)
    window.already_written(a)
    window.calling(b)
    window.ready(b, [OUT])
    produced = []
    for slot in window.producible():
        window.produced(slot)
        produced.append(slot)
    assert produced == [a, b]
    assert a.state is SlotState.ACKED
    assert window.commit_candidate() == 1
    window.acknowledged(b)
    assert window.commit_candidate() == 2


def test_a_halted_window_writes_nothing_more_and_commits_nothing_past_the_refusal() -> None:
    window = PartitionWindow("frames", 0)
    a, b = admitted(window, 2)
    for slot in (a, b):
        window.calling(slot)
        window.ready(slot, [OUT])
    window.produced(a)
    window.halt()
    assert list(window.producible()) == []
    assert window.commit_candidate() is None


def test_revocation_abandons_exactly_the_unproduced_tail() -> None:
    window = PartitionWindow("frames", 0)
    a, b, _ = admitted(window, 3)
    window.calling(a)
    window.ready(a, [OUT])
    window.produced(a)
    window.calling(b)
    assert window.abandon_unproduced() == 2
    assert list(window.slots) == [a]
    assert list(window.producible()) == []


def test_a_retry_goes_back_to_its_place_among_the_waiting() -> None:
    state = PartitionState.assigned("frames", 0)
    a, b, c = admitted(state.window, 3)
    for slot in (b, c):
        state.wait_for_call(slot)
    state.wait_for_call(a)
    assert [s.offset for s in state.waiting] == [0, 1, 2]


def test_flow_control_pauses_at_the_high_water_mark_and_resumes_at_half() -> None:
    state = PartitionState.assigned("frames", 0)
    state.backlog_bytes = 1000
    assert state.should_pause(1000)
    state.paused = True
    assert not state.should_resume(1000)
    state.backlog_bytes = 500
    assert state.should_resume(1000)


# -- properties over random histories --------------------------------------------------

EVENTS = st.lists(
    st.tuples(
        st.sampled_from(
            ["admit", "call", "finish", "fail", "produce", "ack", "commit", "confirm", "revoke"]
        ),
        st.integers(min_value=0, max_value=1000),
    ),
    max_size=300,
)


class Driver:
    """Applies random events the way the broker would, checking invariants after each."""

    def __init__(self, bound: int) -> None:
        self.window = PartitionWindow("frames", 0)
        self.bound = bound
        self.next_offset = 0
        self.written: list[int] = []  # offsets handed to the producer, in order
        self.pending: list[Slot] = []  # produced, acks outstanding (any order)
        self.committing: int | None = None
        self.committed_to = 0

    def apply(self, event: str, pick: int) -> None:
        window = self.window
        slots = list(window.slots)
        if event == "admit" and len(window) < self.bound:
            window.admit(self.next_offset, b"k", b"v")
            self.next_offset += 1 + pick % 3  # compacted topics have gaps
        elif event in ("call", "finish", "fail") and slots:
            slot = slots[pick % len(slots)]
            if event == "call" and slot.state is SlotState.WAITING:
                window.calling(slot)
            elif event == "finish" and slot.state is SlotState.CALLING:
                window.ready(slot, [OUT] * (1 + pick % 2))
            elif event == "fail" and slot.state is SlotState.CALLING:
                window.retry(slot, 0.0)
        elif event == "produce":
            for slot in window.producible():
                window.produced(slot)
                self.written.append(slot.offset)
                if slot.state is SlotState.PRODUCED:
                    self.pending.extend([slot] * slot.pending_acks)
        elif event == "ack" and self.pending:
            window.acknowledged(self.pending.pop(pick % len(self.pending)))
        elif event == "commit" and self.committing is None:
            candidate = window.commit_candidate()
            if candidate is not None:
                window.commit_started(candidate)
                self.committing = candidate
        elif event == "confirm" and self.committing is not None:
            window.commit_confirmed(self.committing)
            self.committed_to = self.committing
            self.committing = None
        elif event == "revoke":
            window.abandon_unproduced()
        self.check()

    def check(self) -> None:
        window = self.window
        assert len(window) <= self.bound
        assert self.written == sorted(set(self.written)), "output offsets strictly increase"
        candidate = window.commit_candidate()
        for slot in window.slots:
            if candidate is not None and slot.offset < candidate:
                assert slot.state is SlotState.ACKED, "no commit passes an unacknowledged slot"
        if window.committed is not None:
            assert all(slot.offset >= window.committed for slot in window.slots)
        offsets = [slot.offset for slot in window.slots]
        assert offsets == sorted(set(offsets))


@settings(max_examples=300, deadline=None)
@given(events=EVENTS, bound=st.integers(min_value=1, max_value=16))
def test_random_histories_keep_order_and_commit_safety(
    events: list[tuple[str, int]], bound: int
) -> None:
    driver = Driver(bound)
    for event, pick in events:
        driver.apply(event, pick)


@settings(max_examples=200, deadline=None)
@given(events=EVENTS)
def test_everything_finished_is_eventually_committed(events: list[tuple[str, int]]) -> None:
    driver = Driver(8)
    for event, pick in events:
        if event != "revoke":
            driver.apply(event, pick)
    window = driver.window
    # Finish the history: every call answers, everything is produced and acknowledged.
    for slot in list(window.slots):
        if slot.state is SlotState.WAITING:
            window.calling(slot)
        if slot.state is SlotState.CALLING:
            window.ready(slot, [OUT])
    driver.apply("produce", 0)
    while driver.pending:
        driver.apply("ack", 0)
    if driver.committing is not None:
        driver.apply("confirm", 0)
    driver.apply("commit", 0)
    driver.apply("confirm", 0)
    assert len(window) == 0
    assert driver.written == sorted(driver.written)
