"""Calls and retries: which waiting frame gets a processor call next, and what its answer means.

- At most ``max_in_flight`` calls in total; partitions take turns.
- Per-camera ordered calls: when the processor declares that it keeps state
  per camera (``Describe``), or ``[broker] ordered_calls = "on"``, a camera
  has at most one call in flight and its frames are called in capture order;
  other cameras proceed meanwhile.
- A transient failure waits (capped, jittered exponential backoff) and is
  called again in its place; a final one, or ``max_retries`` exhausted,
  becomes a dead letter plus a ``failed`` result in its place.

Completions arrive on gRPC threads; they are queued and taken by the main
loop, which is woken at once (``wakeup``).
"""

from __future__ import annotations

import collections
import queue
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import grpc
import structlog

from vspd.broker.metrics import BrokerMetrics
from vspd.broker.outputs import OutputBuilder
from vspd.broker.partition import PartitionState
from vspd.broker.processor_client import (
    BATCH_TOO_LARGE,
    CallOutcome,
    ProcessorClient,
    ProcessorNeeds,
)
from vspd.broker.window import Slot, SlotState
from vspd.config.model import BrokerConfig
from vspd.runtime.retry import backoff_delay
from vspd.v1 import result_pb2

log = structlog.get_logger(__name__)

DESCRIBE_RETRY_S = 1.0
BATCH_FRAMING_BYTES = 8  # a frame's field tag and length inside a FrameBatch, at most


@dataclass(frozen=True)
class Completion:
    state: PartitionState
    slot: Slot
    outcome: CallOutcome


class CallScheduler:
    def __init__(
        self,
        settings: BrokerConfig,
        client: ProcessorClient,
        outputs: OutputBuilder,
        metrics: BrokerMetrics,
    ) -> None:
        self._settings = settings
        self._client = client
        self._outputs = outputs
        self._metrics = metrics
        self.in_flight = 0
        self._completions: queue.SimpleQueue[Completion] = queue.SimpleQueue()
        self.wakeup = threading.Event()
        self._calling_cameras: collections.Counter[str] = collections.Counter()
        self.processor_state = "unknown"
        self.processor_error = ""
        # Per-camera order: decided by configuration, or by what the processor declares.
        self._needs: ProcessorNeeds | None = None
        self._described: queue.SimpleQueue[tuple[ProcessorNeeds | None, str]] = queue.SimpleQueue()
        self._describing = False
        self._describe_after = 0.0
        # Lowered when a batch was too large for the processor after all.
        self._batch_byte_cap = 1 << 62

    # -- what the processor needs ----------------------------------------------
    @property
    def ordered(self) -> bool:
        mode = self._settings.ordered_calls
        if mode != "auto":
            return mode == "on"
        return self._needs is not None and self._needs.ordered_per_camera

    @property
    def order_known(self) -> bool:
        return self._settings.ordered_calls != "auto" or self._needs is not None

    def _may_call(self) -> bool:
        """In auto mode no call goes out before the processor said whether it needs order."""
        self._take_descriptions()
        if self.order_known:
            return True
        if time.monotonic() >= self._describe_after:
            self.probe()
        return False

    def probe(self) -> None:
        """Ask the processor to describe itself: what it needs, and whether it answers at all."""
        if self._describing:
            return
        self._describing = True

        def described(needs: ProcessorNeeds | None, error: str) -> None:
            self._described.put((needs, error))
            self.wakeup.set()

        self._client.describe(described)

    def _take_descriptions(self) -> None:
        while True:
            try:
                needs, error = self._described.get_nowait()
            except queue.Empty:
                return
            self._describing = False
            if needs is None:
                self._describe_after = time.monotonic() + DESCRIBE_RETRY_S
                self._unavailable(error)
                continue
            if self._needs != needs:
                log.info(
                    "processor described",
                    processor=needs.name or "?",
                    ordered_per_camera=needs.ordered_per_camera,
                )
            self._needs = needs
            self._answered()

    def forget_needs(self) -> None:
        """The processor was away: it may have been replaced; ask again before calling."""
        if self._settings.ordered_calls == "auto":
            self._needs = None

    # -- issuing -----------------------------------------------------------------
    @property
    def batch_limit(self) -> int:
        """Frames per call: what the settings and the processor allow.

        Only frames already waiting go together (none waits for a batch to fill),
        and at most a quarter of max_in_flight per call, so that calls overlap: a
        batch's frames finish with its slowest one. Measured (bench/broker_bench):
        with a 40 ms processor the throughput is that of single calls and the
        broker's CPU per frame falls by about a third; with an instant one, more.
        """
        needs = self._needs
        if self._settings.processor_api != "vspd" or needs is None:
            return 1
        overlap = max(1, self._settings.max_in_flight // 4)
        return max(1, min(self._settings.max_batch, needs.max_batch, overlap))

    def issue(self, states: Iterable[PartitionState]) -> None:
        limit = self._settings.max_in_flight
        if self.in_flight >= limit or not self._may_call():
            return
        now = time.monotonic()
        ordered = self.ordered
        chosen: list[tuple[PartitionState, Slot]] = []
        for state in states:
            waiting = state.waiting
            skipped: list[Slot] = []
            blocked: set[str] = set()
            while waiting and self.in_flight < limit:
                slot = waiting.popleft()
                if slot.state is not SlotState.WAITING:
                    continue  # finished without a call, or abandoned
                if ordered and (slot.camera in blocked or self._calling_cameras[slot.camera]):
                    skipped.append(slot)
                    blocked.add(slot.camera)
                    continue
                if slot.not_before > now:
                    skipped.append(slot)  # order is kept anyway; later frames go meanwhile
                    blocked.add(slot.camera)
                    continue
                self._start(state, slot)
                chosen.append((state, slot))
            waiting.extendleft(reversed(skipped))
            if self.in_flight >= limit:
                break
        self._send(chosen)

    def _start(self, state: PartitionState, slot: Slot) -> None:
        if slot.frame is None:
            raise RuntimeError(f"slot {slot.offset} has no frame to call with")
        state.window.calling(slot)
        if slot.attempts == 1:
            age_s = (time.time_ns() - slot.frame.capture_time_unix_ns) / 1e9
            self._metrics.frame_age.observe(max(0.0, age_s))  # a clock ahead: not negative
        self.in_flight += 1
        self._calling_cameras[slot.camera] += 1

    def _send(self, chosen: list[tuple[PartitionState, Slot]]) -> None:
        """The chosen frames in calls of up to batch_limit frames (and the byte budget)."""
        per_call = self.batch_limit
        budget = self._batch_bytes()
        batch: list[tuple[PartitionState, Slot]] = []
        size = 0
        for state, slot in chosen:
            if batch and (len(batch) >= per_call or size + len(slot.value) > budget):
                self._send_batch(batch)
                batch, size = [], 0
            batch.append((state, slot))
            size += len(slot.value) + BATCH_FRAMING_BYTES
        if batch:
            self._send_batch(batch)

    def _send_batch(self, batch: list[tuple[PartitionState, Slot]]) -> None:
        if len(batch) == 1:  # alone: Process, whose errors are this frame's alone
            state, slot = batch[0]
            assert slot.frame is not None  # noqa: S101 - _start checked it
            self._client.call(slot.value, slot.frame, self._done_for(state, slot))
            return
        self._metrics.batch_frames.observe(len(batch))
        self._client.call_batch(
            [(slot.value, self._done_for(state, slot)) for state, slot in batch]
        )

    def _batch_bytes(self) -> int:
        needs = self._needs
        told = needs.max_batch_bytes if needs is not None and needs.max_batch_bytes else None
        limits = [self._client.max_call_bytes - BATCH_FRAMING_BYTES * 64, self._batch_byte_cap]
        return min([*limits, told] if told else limits)

    def _done_for(self, state: PartitionState, slot: Slot) -> Callable[[CallOutcome], None]:
        def done(outcome: CallOutcome) -> None:
            self._completions.put(Completion(state, slot, outcome))  # on a gRPC thread
            self.wakeup.set()

        return done

    # -- completing --------------------------------------------------------------
    def take_completions(self, is_current: Callable[[PartitionState], bool]) -> int:
        """Turn finished calls into outputs or retries; returns how many finished."""
        taken = 0
        while True:
            try:
                completion = self._completions.get_nowait()
            except queue.Empty:
                return taken
            taken += 1
            self.in_flight -= 1
            slot = completion.slot
            self._calling_cameras[slot.camera] -= 1
            if self._calling_cameras[slot.camera] <= 0:
                del self._calling_cameras[slot.camera]
            self._metrics.processor_seconds.observe(completion.outcome.seconds)
            if not is_current(completion.state) or slot.state is not SlotState.CALLING:
                continue  # the partition was revoked meanwhile: its work was abandoned
            self._complete(completion.state, slot, completion.outcome)

    def _complete(self, state: PartitionState, slot: Slot, outcome: CallOutcome) -> None:
        frame = slot.frame
        if frame is None:
            raise RuntimeError(f"slot {slot.offset} lost its frame during the call")
        source = (state.topic, state.partition, slot.offset)
        if outcome.result is not None:
            self._answered()
            # Its outputs are made when it is written, in order (tracking happens there).
            state.window.ready_to_track(slot, outcome.result)
            return
        if outcome.details.startswith(BATCH_TOO_LARGE):
            # The processor takes less than it said: smaller batches from now on
            # (down to frames alone); these frames are simply called again.
            self._batch_byte_cap = max(1, min(self._batch_byte_cap, self._batch_bytes()) // 2)
            self._answered()
        elif outcome.code is not grpc.StatusCode.DEADLINE_EXCEEDED and outcome.transient:
            self._unavailable(outcome.details)
        else:
            self._answered()
        retries_left = not self._settings.max_retries or slot.attempts <= self._settings.max_retries
        if outcome.transient and retries_left:
            settings = self._settings
            delay = backoff_delay(settings.retry_initial_s, settings.retry_max_s, slot.attempts)
            state.window.retry(slot, time.monotonic() + delay)
            state.wait_for_call(slot)
            self._metrics.retries.labels(outcome.code.name).inc()
            return
        reason = f"{outcome.code.name}: {outcome.details}"
        if outcome.transient:
            reason = f"gave up after {slot.attempts} attempts; last {reason}"
        log.warning(
            "frame failed", frame=f"{frame.camera_id}/{frame.session_id}/{frame.seq}", reason=reason
        )
        failed = result_pb2.Result(status=result_pb2.STATUS_FAILED, status_reason=reason)
        state.window.ready(
            slot,
            [
                self._outputs.dead_letter("broker.processor", reason, slot.key, slot.value, source),
                self._outputs.result(failed, frame, slot.value, source),
            ],
        )

    # -- processor health ----------------------------------------------------------
    def _answered(self) -> None:
        if self.processor_state != "ok":
            log.info("processor available", was=self.processor_state)
        self.processor_state = "ok"
        self.processor_error = ""
        self._metrics.processor_up.set(1)

    def _unavailable(self, error: str) -> None:
        if self.processor_state != "unavailable":
            log.warning("processor unavailable; frames wait and are retried", error=error)
            self.forget_needs()
        self.processor_state = "unavailable"
        self.processor_error = error
        self._metrics.processor_up.set(0)
