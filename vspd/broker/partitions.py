"""Partition bookkeeping: assignment, admission into windows, flow control and commits.

One PartitionState per assigned partition. Messages are buffered per
partition as they arrive and admitted into the window while it has room;
admission decodes the frame (poison -> dead letter), applies max_frame_age_s,
and skips frames whose results an earlier owner already wrote.

Commits: offsets are stored as slots are acknowledged and librdkafka commits
them every COMMIT_INTERVAL_MS; a window's slots leave only when a commit
covering them is confirmed, so the window bounds what a crash redoes.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import structlog
from confluent_kafka import (
    OFFSET_INVALID,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    TopicPartition,
)

from vspd import wire
from vspd.broker.bounds import Bounds
from vspd.broker.outputs import OutputBuilder
from vspd.broker.partition import PartitionState
from vspd.broker.recovery import WrittenResults
from vspd.broker.writer import ResultWriter
from vspd.config.model import BrokerConfig
from vspd.tracking.tracker import Tracker
from vspd.v1 import result_pb2

log = structlog.get_logger(__name__)

PartitionKey = tuple[str, int]
COMMITTED_TIMEOUT_S = 10.0
# How often librdkafka commits the stored offsets (a request to the group
# coordinator each): slots leave the windows at this pace.
COMMIT_INTERVAL_MS = 20


class Partitions:
    def __init__(
        self,
        settings: BrokerConfig,
        consumer: Consumer,
        outputs: OutputBuilder,
        writer: ResultWriter,
        recovery: WrittenResults,
        tracker: Tracker | None = None,
        bounds: Bounds | None = None,
    ) -> None:
        self._tracker = tracker
        # A bounded run (vspd replay): where to start and stop, which frames count.
        self.bounds = bounds
        self.wanted = 0  # frames of the bounded period admitted for a result
        self.already_written = 0  # frames whose result an earlier run or owner wrote
        self._settings = settings
        self._consumer = consumer
        self._outputs = outputs
        self._writer = writer
        self._recovery = recovery
        self.states: dict[PartitionKey, PartitionState] = {}

    def __iter__(self) -> Iterator[PartitionState]:
        return iter(self.states.values())

    def is_current(self, state: PartitionState) -> bool:
        return self.states.get(state.key) is state

    # -- receiving and admitting ---------------------------------------------
    def receive(self, message: Message) -> None:
        error = message.error()
        if error is not None:
            if error.code() != KafkaError._PARTITION_EOF:
                log.warning("consume error", error=error.str())
            return
        state = self.states.get((message.topic(), message.partition()))
        if state is None:
            return
        if self.bounds is not None and self.bounds.beyond(state.partition, message.offset() or 0):
            return  # after the period: never admitted (the run ends before it)
        state.buffer(message)

    def admit(self) -> None:
        """Move buffered messages into windows while they have room, in offset order."""
        limit = self._settings.max_in_flight_per_partition
        for state in self.states.values():
            window = state.window
            while state.backlog and len(window) < limit:
                self._admit(state, state.next_message())

    def _admit(self, state: PartitionState, message: Message) -> None:
        value: bytes = message.value() or b""
        slot = state.window.admit(message.offset(), message.key(), value)
        source = (state.topic, state.partition, slot.offset)
        if slot.offset in state.written:
            state.written.discard(slot.offset)
            state.window.already_written(slot)
            self.already_written += 1
            return
        try:
            frame = wire.decode_frame(value)
        except wire.BadMessageError as exc:
            log.warning(
                "poison message", partition=state.partition, offset=slot.offset, reason=str(exc)
            )
            state.window.ready(
                slot,
                [self._outputs.dead_letter("broker.decode", str(exc), slot.key, value, source)],
            )
            return
        age = self._settings.max_frame_age_s
        if age and (time.time_ns() - frame.capture_time_unix_ns) / 1e9 > age:
            skipped = result_pb2.Result(
                status=result_pb2.STATUS_SKIPPED,
                status_reason=f"older than max_frame_age_s={age:g}",
            )
            state.window.ready(slot, [self._outputs.result(skipped, frame, value, source)])
            return
        if self.bounds is not None:
            if not self.bounds.wants(frame):
                state.window.ready(slot, [])  # another camera, or outside the period
                return
            self.wanted += 1
        slot.frame = frame
        slot.camera = frame.camera_id
        state.wait_for_call(slot)

    # -- flow control --------------------------------------------------------
    def high_water_bytes(self) -> int:
        """Each partition's share of max_buffered_bytes: pause there, resume at half."""
        return max(1, self._settings.max_buffered_bytes // max(1, len(self.states)))

    def flow_control(self) -> None:
        high = self.high_water_bytes()
        pause = [s for s in self.states.values() if s.should_pause(high)]
        resume = [s for s in self.states.values() if s.should_resume(high)]
        if pause:
            self._consumer.pause([TopicPartition(s.topic, s.partition) for s in pause])
            for state in pause:
                state.paused = True
        if resume:
            # librdkafka continues after the last message it handed us.
            self._consumer.resume([TopicPartition(s.topic, s.partition) for s in resume])
            for state in resume:
                state.paused = False

    def pause_all(self) -> None:
        states = [s for s in self.states.values() if not s.paused]
        if states:
            self._consumer.pause([TopicPartition(s.topic, s.partition) for s in states])
            for state in states:
                state.paused = True

    def buffered_bytes(self) -> int:
        return sum(s.backlog_bytes for s in self.states.values())

    # -- committing ----------------------------------------------------------
    def commit(self, synchronous: bool = False) -> None:
        """Hand what may be committed to librdkafka, which commits it in the background.

        store_offsets costs next to nothing (an explicit commit call holds the
        loop for milliseconds); librdkafka commits stored offsets every
        auto.commit.interval.ms and confirms through on_commit, which is what
        lets slots leave the windows. synchronous: commit now and wait (drain).
        """
        offsets = []
        for state in self.states.values():
            candidate = state.window.commit_candidate()
            if candidate is not None:
                state.window.commit_started(candidate)
                offsets.append(TopicPartition(state.topic, state.partition, candidate))
        try:
            if offsets:
                self._consumer.store_offsets(offsets=offsets)
            if synchronous:
                confirmed = self._consumer.commit(asynchronous=False)
                self.on_commit(None, confirmed or [])
        except KafkaException as exc:
            error = exc.args[0]
            if isinstance(error, KafkaError) and error.code() == KafkaError._NO_OFFSET:
                return  # nothing new to commit
            for state in self.states.values():
                state.window.commit_failed()
            log.warning("commit failed; will retry", error=str(exc))

    def on_commit(self, error: KafkaError | None, partitions: list[TopicPartition]) -> None:
        for partition in partitions:
            state = self.states.get((partition.topic, partition.partition))
            if state is None:
                continue
            if error is not None or partition.error is not None:
                state.window.commit_failed()
            elif partition.offset >= 0:
                state.window.commit_confirmed(partition.offset)
        if error is not None and error.code() != KafkaError._NO_OFFSET:
            log.warning("commit failed; will retry", error=error.str())

    # -- rebalancing ---------------------------------------------------------
    def on_assign(self, consumer: Any, partitions: list[TopicPartition]) -> None:
        fresh = [tp for tp in partitions if (tp.topic, tp.partition) not in self.states]
        committed = self._committed(fresh)
        for tp in fresh:
            state = PartitionState.assigned(tp.topic, tp.partition)
            start = committed.get((tp.topic, tp.partition))
            if start is not None:
                state.window.committed = start
                recovered = self._recovery.find(
                    tp.topic, tp.partition, start, self._outputs.results_partitions
                )
                state.written = recovered.written
                if self._tracker is not None:
                    # Tracks continue from the last results written for these cameras.
                    for camera, result in recovered.last_results.items():
                        self._tracker.seed(camera, result.frame.capture_time_unix_ns, result)
                # Fetch from exactly where the window starts, not from a reset
                # policy's own look-up (a broker's loose answer skipped a frame).
                tp.offset = start
            self.states[state.key] = state
        if self._settings.assignment_strategy == "cooperative-sticky":
            consumer.incremental_assign(partitions)
        else:
            consumer.assign(partitions)
        log.info("partitions assigned", partitions=sorted(tp.partition for tp in partitions))

    def _committed(self, partitions: list[TopicPartition]) -> dict[PartitionKey, int]:
        """Where each partition resumes: its committed offset, else its first offset."""
        if not partitions:
            return {}
        try:
            answers = self._consumer.committed(partitions, timeout=COMMITTED_TIMEOUT_S)
        except KafkaException as exc:
            log.warning("cannot read committed offsets", error=str(exc))
            return {}
        starts: dict[PartitionKey, int] = {}
        for tp in answers:
            offset = tp.offset
            if (offset == OFFSET_INVALID or offset < 0) and self.bounds is not None:
                starts[(tp.topic, tp.partition)] = self.bounds.start.get(tp.partition, 0)
                continue
            if offset == OFFSET_INVALID or offset < 0:
                try:
                    offset, _high = self._consumer.get_watermark_offsets(
                        TopicPartition(tp.topic, tp.partition), timeout=COMMITTED_TIMEOUT_S
                    )
                except KafkaException:
                    continue
            starts[(tp.topic, tp.partition)] = offset
        return starts

    def on_revoke(self, _consumer: Any, partitions: list[TopicPartition]) -> None:
        keys = {(tp.topic, tp.partition) for tp in partitions} & set(self.states)
        if not keys:
            return
        # What is finished is written and committed; the rest is abandoned and
        # will be processed by the partition's next owner.
        leaving = [self.states[key] for key in keys]
        self._writer.write_heads(leaving)
        abandoned = sum(state.window.abandon_unproduced() for state in leaving)
        self._writer.flush()
        offsets = []
        for state in leaving:
            # Everything acknowledged, whether or not its offset was stored already.
            acked_to = state.window.acked_to()
            if acked_to is not None:
                offsets.append(TopicPartition(state.topic, state.partition, acked_to))
        if offsets:
            try:
                self._consumer.commit(offsets=offsets, asynchronous=False)
            except KafkaException as exc:
                log.warning("commit on revocation failed", error=str(exc))
        for key in keys:
            del self.states[key]
        log.info("partitions revoked", partitions=sorted(k[1] for k in keys), abandoned=abandoned)

    def on_lost(self, _consumer: Any, partitions: list[TopicPartition]) -> None:
        keys = {(tp.topic, tp.partition) for tp in partitions}
        for key in keys:
            self.states.pop(key, None)
        # Taken away without a revocation: a zombie risk (see recovery.py); said, not counted.
        log.warning("partitions lost", partitions=sorted(k[1] for k in keys))

    def uncommitted(self) -> int:
        return sum(len(s.window) for s in self.states.values())

    def paused(self) -> int:
        return sum(1 for s in self.states.values() if s.paused)
