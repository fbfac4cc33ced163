"""`vspd broker`: frames -> processor calls -> results, in capture order per camera.

One main loop (no threads of our own): consume into per-partition ordered
windows, issue gRPC calls while capacity allows, take their completions from a
queue, produce finished heads in order, commit what Kafka has acknowledged.
A partition whose window is full is paused; it resumes as the window drains.
"""

from __future__ import annotations

import argparse
import collections
import queue
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import grpc
import structlog
from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition
from prometheus_client import CollectorRegistry

from vspd import wire
from vspd.broker.errors import ResultNotWrittenError
from vspd.broker.metrics import BrokerMetrics
from vspd.broker.processor_client import CallOutcome, ProcessorClient
from vspd.broker.window import Output, PartitionWindow, Slot, SlotState
from vspd.config import VspdConfig
from vspd.runtime.kafka import consumer_settings, producer_settings
from vspd.runtime.lifecycle import StopFlag
from vspd.runtime.service import serve
from vspd.v1 import frame_pb2, result_pb2

log = structlog.get_logger(__name__)

PartitionKey = tuple[str, int]
BATCH = 64
BUSY_POLL_S = 0.005
IDLE_POLL_S = 0.2
FLUSH_TIMEOUT_S = 30.0
LAG_REFRESH_S = 5.0


@dataclass(frozen=True)
class Completion:
    window: PartitionWindow
    slot: Slot
    outcome: CallOutcome


class BrokerDaemon:
    name = "broker"

    def __init__(self, config: VspdConfig, registry: CollectorRegistry) -> None:
        self.config = config
        self.settings = config.broker
        self.metrics = BrokerMetrics(registry)
        self.windows: dict[PartitionKey, PartitionWindow] = {}
        self.backlogs: dict[PartitionKey, collections.deque[Message]] = {}
        self.paused: set[PartitionKey] = set()
        self.completions: queue.SimpleQueue[Completion] = queue.SimpleQueue()
        self.completions_ready = threading.Event()
        self.calls_in_flight = 0
        self.counts = {"ok": 0, "failed": 0, "skipped": 0, "dead_letters": 0, "retries": 0}
        self.processor_state = "unknown"
        self.processor_error = ""
        self.fatal: ResultNotWrittenError | None = None
        self._commit_in_flight = False
        self._last_lag = 0.0
        self._rate: list[tuple[float, int]] = []
        self.client = ProcessorClient(self.settings, config.kafka.message_max_bytes)
        self.producer = Producer(
            producer_settings(
                config.kafka,
                "vspd-broker",
                **{"message.timeout.ms": 0, "error_cb": self._on_kafka_error},
            )
        )
        self.consumer = Consumer(
            consumer_settings(
                config.kafka,
                "vspd-broker",
                self.settings.group_id,
                **{
                    "partition.assignment.strategy": self.settings.assignment_strategy,
                    "on_commit": self._on_commit,
                    "error_cb": self._on_kafka_error,
                },
            )
        )

    # -- lifecycle ---------------------------------------------------------
    def start(self) -> None:
        self.consumer.subscribe(
            [self.config.kafka.frames_topic],
            on_assign=self._on_assign,
            on_revoke=self._on_revoke,
            on_lost=self._on_lost,
        )
        log.info(
            "consuming",
            topic=self.config.kafka.frames_topic,
            group=self.settings.group_id,
            processors=self.settings.processor_addresses,
            api=self.settings.processor_api,
        )

    def step(self) -> None:
        if self.fatal is not None:
            raise self.fatal
        messages = self.consumer.consume(BATCH, 0)
        if not messages and self.completions.empty():
            messages = self._wait_for_work()
        for message in messages:
            self._receive(message)
        self._take_completions()
        self._fill_windows()
        self._issue_calls()
        self._produce_heads()
        self.producer.poll(0)
        self._commit()
        self._pause_or_resume()
        self._observe()

    def _wait_for_work(self) -> list[Message]:
        """Sleep until a call completes or messages arrive, whichever comes first."""
        if self.calls_in_flight:
            try:
                # A completion wakes us at once; gRPC threads put them here.
                self.completions_ready.wait(BUSY_POLL_S)
            finally:
                self.completions_ready.clear()
            messages: list[Message] = self.consumer.consume(BATCH, 0)
            return messages
        busy = any(len(w) for w in self.windows.values()) or any(self.backlogs.values())
        waited: list[Message] = self.consumer.consume(BATCH, BUSY_POLL_S if busy else IDLE_POLL_S)
        return waited

    def drain(self) -> None:
        """Finish what is in flight (bounded), write it in order, commit, leave the group."""
        self._pause(set(self.windows))
        deadline = time.monotonic() + self.settings.call_timeout_s + 1
        while self.calls_in_flight and time.monotonic() < deadline and self.fatal is None:
            self.consumer.consume(BATCH, BUSY_POLL_S)
            self._take_completions()
            self._produce_heads()
            self.producer.poll(0)
        self._produce_heads()
        self.producer.flush(FLUSH_TIMEOUT_S)
        self._commit(synchronous=True)
        self.consumer.close()  # revokes: on_revoke commits again, harmlessly
        self.client.close()

    # -- consuming -----------------------------------------------------------
    def _receive(self, message: Message) -> None:
        error = message.error()
        if error is not None:
            if error.code() != KafkaError._PARTITION_EOF:
                log.warning("consume error", error=error.str())
            return
        key = (message.topic(), message.partition())
        if key in self.windows:
            self.backlogs[key].append(message)

    def _fill_windows(self) -> None:
        """Move received messages into windows while they have room, in offset order."""
        for key, window in self.windows.items():
            backlog = self.backlogs[key]
            while backlog and not self._window_full(window):
                self._admit(window, backlog.popleft())

    def _admit(self, window: PartitionWindow, message: Message) -> None:
        slot = window.admit(message.offset(), message.key(), message.value() or b"")
        try:
            frame = wire.decode_frame(message.value())
        except wire.BadMessageError as exc:
            window.ready(slot, [self._dead_letter(window, slot, "broker.decode", str(exc))])
            return
        slot.payload = frame
        age = self.settings.max_frame_age_s
        if age and (time.time_ns() - frame.capture_time_unix_ns) / 1e9 > age:
            result = result_pb2.Result(
                status=result_pb2.STATUS_SKIPPED,
                status_reason=f"older than max_frame_age_s={age:g}",
            )
            result.frame.CopyFrom(frame)
            window.ready(slot, [self._result_output(result, frame)])

    # -- calling the processor ---------------------------------------------
    def _issue_calls(self) -> None:
        now = time.monotonic()
        for window in self.windows.values():
            for slot in window.waiting():
                if self.calls_in_flight >= self.settings.max_in_flight:
                    return
                if slot.not_before > now:
                    # Order is kept anyway; later frames may be processed meanwhile.
                    continue
                frame = slot.payload
                if not isinstance(frame, frame_pb2.Frame):
                    continue
                slot.state = SlotState.CALLING
                slot.attempts += 1
                self.calls_in_flight += 1
                self.client.call(frame, self._completion_for(window, slot))

    def _completion_for(self, window: PartitionWindow, slot: Slot) -> Callable[[CallOutcome], None]:
        def done(outcome: CallOutcome) -> None:
            self.completions.put(Completion(window, slot, outcome))  # from a gRPC thread
            self.completions_ready.set()

        return done

    def _take_completions(self) -> None:
        while True:
            try:
                completion = self.completions.get_nowait()
            except queue.Empty:
                return
            self.calls_in_flight -= 1
            self._complete(completion)

    def _complete(self, completion: Completion) -> None:
        window, slot, outcome = completion.window, completion.slot, completion.outcome
        self.metrics.processor_seconds.observe(outcome.seconds)
        if (
            self.windows.get((window.topic, window.partition)) is not window
            or slot.state is not SlotState.CALLING
        ):
            return  # the partition was revoked meanwhile: its work was abandoned
        frame = slot.payload
        if not isinstance(frame, frame_pb2.Frame):
            return
        if outcome.result is not None:
            self._processor_answered()
            result = outcome.result
            result.frame.CopyFrom(frame)
            window.ready(slot, [self._result_output(result, frame)])
            return
        if outcome.code is not grpc.StatusCode.DEADLINE_EXCEEDED and outcome.transient:
            self._processor_failing(outcome)
        else:
            self._processor_answered()
        retries_left = not self.settings.max_retries or slot.attempts <= self.settings.max_retries
        if outcome.transient and retries_left:
            delay = min(
                self.settings.retry_initial_s * 2 ** (slot.attempts - 1), self.settings.retry_max_s
            )
            slot.not_before = time.monotonic() + delay * random.uniform(0.8, 1.2)  # noqa: S311 - jitter
            slot.state = SlotState.WAITING
            self.counts["retries"] += 1
            self.metrics.retries.labels(outcome.code.name).inc()
            return
        reason = f"{outcome.code.name}: {outcome.details}"
        if outcome.transient:
            reason = f"gave up after {slot.attempts} attempts; last {reason}"
        result = result_pb2.Result(status=result_pb2.STATUS_FAILED, status_reason=reason)
        result.frame.CopyFrom(frame)
        log.warning(
            "frame failed", frame=f"{frame.camera_id}/{frame.session_id}/{frame.seq}", reason=reason
        )
        window.ready(
            slot,
            [
                self._dead_letter(window, slot, "broker.processor", reason),
                self._result_output(result, frame),
            ],
        )

    def _processor_answered(self) -> None:
        if self.processor_state != "ok":
            log.info("processor available", was=self.processor_state)
        self.processor_state = "ok"
        self.processor_error = ""
        self.metrics.processor_up.set(1)

    def _processor_failing(self, outcome: CallOutcome) -> None:
        if self.processor_state != "unavailable":
            log.warning("processor unavailable; frames wait and are retried", error=outcome.details)
        self.processor_state = "unavailable"
        self.processor_error = outcome.details
        self.metrics.processor_up.set(0)

    # -- producing -----------------------------------------------------------
    def _result_output(self, result: result_pb2.Result, frame: frame_pb2.Frame) -> Output:
        result.result_time_unix_ns = time.time_ns()
        if not self.settings.include_image:
            result.frame.ClearField("image")
        status = {result_pb2.STATUS_OK: "ok", result_pb2.STATUS_FAILED: "failed"}.get(
            result.status, "skipped"
        )
        return Output(
            self.config.kafka.results_topic,
            wire.frame_key(frame.camera_id),
            result.SerializeToString(),
            counts_as=status,
        )

    def _dead_letter(self, window: PartitionWindow, slot: Slot, stage: str, reason: str) -> Output:
        letter = result_pb2.DeadLetter(
            reason=reason,
            stage=stage,
            source_topic=window.topic,
            source_partition=window.partition,
            source_offset=slot.offset,
            original_key=slot.key or b"",
            original_value=slot.value,
            time_unix_ns=time.time_ns(),
        )
        if stage == "broker.decode":
            log.warning(
                "poison message", partition=window.partition, offset=slot.offset, reason=reason
            )
        return Output(
            self.config.kafka.dead_letter_topic,
            slot.key,
            letter.SerializeToString(),
            counts_as=stage,
        )

    def _produce_heads(self) -> None:
        for window in self.windows.values():
            for slot in list(window.producible()):
                for output in slot.outputs:
                    self._produce(output, window, slot)
                window.produced(slot)

    def _produce(self, output: Output, window: PartitionWindow, slot: Slot) -> None:
        def delivered(error: KafkaError | None, _message: Message) -> None:
            if error is not None:
                # Writing later results now would break the order: stop here.
                self.fatal = ResultNotWrittenError(
                    f"Kafka refused a message for {output.topic} ({error.str()}); "
                    f"nothing after offset {slot.offset - 1} of partition {window.partition} is committed"
                )
                return
            window.acknowledged(slot)
            self._count_written(output)

        while True:
            try:
                self.producer.produce(
                    output.topic, value=output.value, key=output.key, on_delivery=delivered
                )
            except BufferError:
                self.producer.poll(0.05)  # librdkafka's queue is full: let it drain
                continue
            except KafkaException as exc:
                raise ResultNotWrittenError(
                    f"cannot write {len(output.value)} bytes to {output.topic}: {exc.args[0].str()} "
                    "(message_max_bytes too small? include_image = false keeps results small)"
                ) from None
            return

    def _count_written(self, output: Output) -> None:
        """Metrics count what Kafka has acknowledged, not what was merely computed."""
        if output.topic == self.config.kafka.dead_letter_topic:
            self.counts["dead_letters"] += 1
            self.metrics.dead_letters.labels(output.counts_as).inc()
        else:
            self.counts[output.counts_as] += 1
            self.metrics.results.labels(output.counts_as).inc()

    # -- committing ----------------------------------------------------------
    def _commit(self, synchronous: bool = False) -> None:
        if self._commit_in_flight and not synchronous:
            return
        offsets = []
        for window in self.windows.values():
            candidate = window.commit_candidate()
            if candidate is not None:
                window.commit_started(candidate)
                offsets.append(TopicPartition(window.topic, window.partition, candidate))
        if not offsets:
            return
        try:
            if synchronous:
                confirmed = self.consumer.commit(offsets=offsets, asynchronous=False)
            else:
                self._commit_in_flight = True
                self.consumer.commit(offsets=offsets, asynchronous=True)
                return
        except KafkaException as exc:
            self._commit_in_flight = False
            for window in self.windows.values():
                window.commit_failed()
            log.warning("commit failed; will retry", error=str(exc))
            return
        self._on_commit(None, confirmed or offsets)

    def _on_commit(self, error: KafkaError | None, partitions: list[TopicPartition]) -> None:
        self._commit_in_flight = False
        for partition in partitions:
            window = self.windows.get((partition.topic, partition.partition))
            if window is None:
                continue
            if error is not None or partition.error is not None:
                window.commit_failed()
            elif partition.offset >= 0:
                window.commit_confirmed(partition.offset)
        if error is not None and error.code() != KafkaError._NO_OFFSET:
            log.warning("commit failed; will retry", error=error.str())

    # -- flow control --------------------------------------------------------
    def _window_full(self, window: PartitionWindow) -> bool:
        # The window bounds uncommitted frames per partition; calls are bounded
        # separately (max_in_flight), so finished frames awaiting their commit
        # do not hold back calls for others.
        return len(window) >= self.settings.max_in_flight_per_partition

    def _pause_or_resume(self) -> None:
        # Received-but-not-admitted messages wait in a backlog (never processed,
        # so never duplicated by a crash). A full backlog pauses the partition;
        # it resumes once half drained, so that refetching overlaps processing.
        limit = self.settings.max_in_flight_per_partition
        to_pause = {k for k, b in self.backlogs.items() if len(b) >= limit and k not in self.paused}
        to_resume = {k for k in self.paused if len(self.backlogs.get(k, ())) <= limit // 2}
        self._pause(to_pause)
        if to_resume:
            self.consumer.resume([TopicPartition(*key) for key in to_resume])
            self.paused -= to_resume

    def _pause(self, keys: set[PartitionKey]) -> None:
        # librdkafka continues after the last message it handed us on resume.
        keys = (keys & set(self.windows)) - self.paused
        if keys:
            self.consumer.pause([TopicPartition(*key) for key in keys])
            self.paused |= keys

    # -- rebalancing ---------------------------------------------------------
    def _on_assign(self, _consumer: Any, partitions: list[TopicPartition]) -> None:
        for tp in partitions:
            key = (tp.topic, tp.partition)
            self.windows.setdefault(key, PartitionWindow(tp.topic, tp.partition))
            self.backlogs.setdefault(key, collections.deque())
        log.info("partitions assigned", partitions=sorted(tp.partition for tp in partitions))

    def _on_revoke(self, _consumer: Any, partitions: list[TopicPartition]) -> None:
        keys = {(tp.topic, tp.partition) for tp in partitions} & set(self.windows)
        if not keys:
            return
        # What is finished is written and committed; the rest is abandoned and
        # will be processed by the partition's next owner.
        self._produce_heads()
        abandoned = sum(self.windows[key].abandon_unproduced() for key in keys)
        self.producer.flush(FLUSH_TIMEOUT_S)
        offsets = []
        for key in keys:
            candidate = self.windows[key].commit_candidate()
            if candidate is not None:
                offsets.append(TopicPartition(key[0], key[1], candidate))
        if offsets:
            try:
                self.consumer.commit(offsets=offsets, asynchronous=False)
            except KafkaException as exc:
                log.warning("commit on revocation failed", error=str(exc))
        for key in keys:
            del self.windows[key]
            self.backlogs.pop(key, None)
        self.paused -= keys
        log.info("partitions revoked", partitions=sorted(k[1] for k in keys), abandoned=abandoned)

    def _on_lost(self, _consumer: Any, partitions: list[TopicPartition]) -> None:
        keys = {(tp.topic, tp.partition) for tp in partitions}
        for key in keys:
            self.windows.pop(key, None)
            self.backlogs.pop(key, None)
        self.paused -= keys
        log.warning("partitions lost", partitions=sorted(k[1] for k in keys))

    def _on_kafka_error(self, error: KafkaError) -> None:
        log.warning("kafka", error=error.str(), code=error.name())

    # -- status --------------------------------------------------------------
    def _observe(self) -> None:
        self.metrics.in_flight.set(self.calls_in_flight)
        self.metrics.window.set(sum(len(w) for w in self.windows.values()))
        now = time.monotonic()
        if now - self._last_lag < LAG_REFRESH_S:
            return
        self._last_lag = now
        for (topic, partition), window in self.windows.items():
            try:
                _low, high = self.consumer.get_watermark_offsets(
                    TopicPartition(topic, partition), cached=True
                )
            except KafkaException:
                continue
            position = window.slots[-1].offset + 1 if window.slots else window.committed
            if position is not None and high >= 0:
                self.metrics.lag.labels(str(partition)).set(max(0, high - position))

    def _results_per_s(self) -> float:
        now = time.monotonic()
        done = self.counts["ok"] + self.counts["failed"] + self.counts["skipped"]
        self._rate.append((now, done))
        self._rate = [(t, n) for t, n in self._rate if now - t <= 10]
        (t0, n0), (t1, n1) = self._rate[0], self._rate[-1]
        return (n1 - n0) / (t1 - t0) if t1 > t0 else 0.0

    def status(self) -> str:
        window = sum(len(w) for w in self.windows.values())
        text = (
            f"{len(self.windows)} partitions ({len(self.paused)} paused); {self.calls_in_flight} in flight, "
            f"{window} uncommitted; {self._results_per_s():.1f} results/s; ok {self.counts['ok']}, "
            f"failed {self.counts['failed']}, skipped {self.counts['skipped']}, "
            f"retries {self.counts['retries']}, dead letters {self.counts['dead_letters']}; "
            f"processor {self.processor_state}"
        )
        return f"{text} ({self.processor_error})" if self.processor_error else text


def main(config: VspdConfig, _args: argparse.Namespace) -> int:
    registry = CollectorRegistry()
    stop = StopFlag().install()
    daemon = BrokerDaemon(config, registry)
    return serve(daemon, stop, config, registry, config.metrics.broker_port)
