"""`vspd broker`: frames -> processor calls -> results, in capture order per camera.

One main loop (no threads of our own) wires four parts, each in its module:
- partitions.py: assignment, per-partition buffers and windows, flow control, commits;
- calls.py: which frame gets a processor call, retries, per-camera order;
- writer.py: finished heads to Kafka in order, counting what Kafka acknowledged;
- recovery.py: on assignment, which results an earlier owner already wrote.

The loop never sleeps while there is work: a completed call wakes it at once;
when idle it waits in the consumer for new frames.
"""

from __future__ import annotations

import argparse
import os
import socket
import time
from pathlib import Path

import structlog
from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource
from prometheus_client import CollectorRegistry

from vspd.broker.calls import CallScheduler
from vspd.broker.metrics import BrokerMetrics
from vspd.broker.outputs import OutputBuilder
from vspd.broker.partitions import COMMIT_INTERVAL_MS, Partitions
from vspd.broker.processor_client import ProcessorClient
from vspd.broker.recovery import WrittenResults
from vspd.broker.writer import ResultWriter
from vspd.config import VspdConfig
from vspd.runtime.kafka import KafkaErrorLog, common_settings, consumer_settings, producer_settings
from vspd.runtime.lifecycle import StopFlag
from vspd.runtime.metrics import SlidingRate, counted
from vspd.runtime.readiness import AssignmentWait, Readiness
from vspd.runtime.service import serve
from vspd.tracking.tracker import Tracker, TrackerSettings

log = structlog.get_logger(__name__)

BATCH = 256
# While calls are in flight the loop wakes for a completion at once, and looks
# for new frames at least this often.
BUSY_WAIT_S = 0.002
IDLE_WAIT_S = 0.1
LAG_REFRESH_S = 5.0
METADATA_TIMEOUT_S = 10.0


def group_instance_id(setting: str) -> str | None:
    """Static membership: a restarted broker gets its partitions back at once.

    "auto" means: under systemd, "<host>-<unit>" (stable per host and unit);
    elsewhere none (two brokers started by hand on one host would fence each
    other with one id). "" switches it off; anything else is used as given.
    """
    if setting != "auto":
        return setting or None
    if not os.environ.get("INVOCATION_ID"):
        return None
    unit = _systemd_unit()
    return f"{socket.gethostname()}-{unit}" if unit else None


def _systemd_unit() -> str:
    try:
        cgroup = Path("/proc/self/cgroup").read_text()
    except OSError:
        return ""
    for line in cgroup.splitlines():
        name = line.rsplit("/", 1)[-1]
        if name.endswith(".service"):
            return name.removesuffix(".service")
    return ""


class BrokerDaemon:
    name = "broker"

    def __init__(self, config: VspdConfig, registry: CollectorRegistry) -> None:
        self.config = config
        self.settings = config.broker
        self._kafka_errors = KafkaErrorLog("vspd-broker")
        self.metrics = BrokerMetrics(registry)
        kafka = config.kafka
        self.outputs = OutputBuilder(kafka, self.settings)
        self.producer = Producer(
            producer_settings(
                kafka, "vspd-broker", **{"message.timeout.ms": 0, "error_cb": self._on_kafka_error}
            )
        )
        tracking = config.tracking
        self.tracker = (
            Tracker(
                TrackerSettings(
                    tracking.high_confidence,
                    tracking.low_confidence,
                    tracking.match_iou,
                    tracking.lost_track_s,
                )
            )
            if tracking.enabled
            else None
        )
        self.writer = ResultWriter(
            self.producer, self.outputs, kafka.dead_letter_topic, self.metrics, self.tracker
        )
        self.client = ProcessorClient(self.settings, kafka.message_max_bytes)
        self.calls = CallScheduler(self.settings, self.client, self.outputs, self.metrics)
        extra: dict[str, object] = {
            "partition.assignment.strategy": self.settings.assignment_strategy,
            "on_commit": self._on_commit,
            # Stored offsets are committed by librdkafka in the background (see partitions.py).
            "enable.auto.commit": True,
            "auto.commit.interval.ms": COMMIT_INTERVAL_MS,
            "error_cb": self._on_kafka_error,
            # Prefetch at most a quarter of the broker's own buffer.
            # (librdkafka accepts at most 2097151 KiB.)
            "queued.max.messages.kbytes": min(
                2_097_151, max(1024, self.settings.max_buffered_bytes // 4096)
            ),
        }
        self.instance_id = group_instance_id(self.settings.group_instance_id)
        if self.instance_id:
            extra["group.instance.id"] = self.instance_id
        self.consumer = Consumer(
            consumer_settings(kafka, "vspd-broker", self.settings.group_id, **extra)
        )
        self.recovery = WrittenResults(kafka)
        self.partitions = Partitions(
            self.settings, self.consumer, self.outputs, self.writer, self.recovery, self.tracker
        )
        self._last_lag = 0.0
        self._rate = SlidingRate()
        self.assignment = AssignmentWait(
            self.settings.group_id, kafka.frames_topic, self.metrics.assigned
        )

    # -- lifecycle ---------------------------------------------------------
    def start(self) -> None:
        self._learn_results_topic()
        self.calls.probe()  # readiness knows at once whether the processor answers
        self.consumer.subscribe(
            [self.config.kafka.frames_topic],
            on_assign=self.partitions.on_assign,
            on_revoke=self.partitions.on_revoke,
            on_lost=self.partitions.on_lost,
        )
        log.info(
            "consuming",
            topic=self.config.kafka.frames_topic,
            group=self.settings.group_id,
            group_instance_id=self.instance_id or "",
            processors=self.settings.processor_addresses,
            api=self.settings.processor_api,
            ordered_calls=self.settings.ordered_calls,
        )

    def readiness(self) -> Readiness:
        """Ready: Kafka reachable, partitions assigned, the processor answering."""
        kafka = self._kafka_errors.unreachable
        processor = self.calls.processor_state
        return Readiness.first_failing(
            Readiness(not kafka, f"Kafka unreachable: {kafka}"),
            self.assignment.readiness(),
            Readiness(
                processor == "ok",
                f"processor {processor}: {self.calls.processor_error or 'no answer yet'}",
            ),
        )

    def _learn_results_topic(self) -> None:
        """Partition count and size limit of the results topic (Apache Kafka's topic limit is 1 MB)."""
        topic = self.config.kafka.results_topic
        try:
            metadata = self.producer.list_topics(topic, timeout=METADATA_TIMEOUT_S)
            partitions = metadata.topics[topic].partitions
        except (KafkaException, KeyError):
            partitions = {}
        self.outputs.results_partitions = len(partitions)
        if not partitions:
            log.warning("results topic has no partitions yet; results go by key", topic=topic)
        admin = AdminClient(common_settings(self.config.kafka, "vspd-broker-admin"))
        for name in (topic, self.config.kafka.dead_letter_topic):
            try:
                future = admin.describe_configs([ConfigResource("topic", name)])
                configs = next(iter(future.values())).result(timeout=METADATA_TIMEOUT_S)
                limit = configs.get("max.message.bytes")
                if limit is not None and limit.value:
                    self.outputs.limit_to(int(limit.value))
            except (KafkaException, ValueError, TypeError, StopIteration, RuntimeError):
                continue  # a broker without DescribeConfigs: the client limit stands

    def step(self) -> None:
        if self.writer.fatal is not None:
            raise self.writer.fatal
        partitions = self.partitions
        messages = self.consumer.consume(BATCH, 0)
        if not messages and not self.calls.wakeup.is_set():
            messages = self._wait_for_work()
        self.calls.wakeup.clear()
        if messages:
            self._kafka_errors.reached()
        else:
            self._kafka_errors.recheck(self._ask_kafka)
        self.assignment.update(len(partitions.states))
        for message in messages:
            partitions.receive(message)
        self.calls.take_completions(partitions.is_current)
        partitions.admit()
        self.calls.issue(partitions)
        self.writer.write_heads(partitions)
        self.writer.poll()
        partitions.commit()
        partitions.flow_control()
        self._observe()

    def _wait_for_work(self) -> list[Message]:
        """Sleep until a call completes or frames arrive, whichever comes first."""
        if self.calls.in_flight or not self.calls.order_known:
            # A completion wakes us at once; gRPC threads set the event.
            self.calls.wakeup.wait(BUSY_WAIT_S)
            messages: list[Message] = self.consumer.consume(BATCH, 0)
            return messages
        if any(s.waiting or s.window.unacknowledged() for s in self.partitions):
            timeout = BUSY_WAIT_S  # retries waiting for their time, or acks to take
        else:
            timeout = IDLE_WAIT_S
        # poll() returns as soon as one message is there; the rest follows at once.
        first = self.consumer.poll(timeout)
        if first is None:
            return []
        rest: list[Message] = self.consumer.consume(BATCH, 0)
        return [first, *rest]

    def drain(self) -> None:
        """Finish what is in flight (bounded), write it in order, commit, leave the group."""
        self.partitions.pause_all()
        deadline = time.monotonic() + self.settings.call_timeout_s + 1
        while self.calls.in_flight and time.monotonic() < deadline:
            self.calls.wakeup.wait(BUSY_WAIT_S)
            self.calls.wakeup.clear()
            self.consumer.consume(BATCH, 0)  # serves commit and rebalance callbacks
            self.calls.take_completions(self.partitions.is_current)
            self.writer.write_heads(self.partitions)  # a halted partition writes nothing
            self.writer.poll()
        self.writer.write_heads(self.partitions)
        self.writer.flush()
        self.partitions.commit(synchronous=True)
        self.consumer.close()  # revokes: on_revoke commits again, harmlessly
        self.recovery.close()
        self.client.close()

    def _ask_kafka(self) -> object:
        return self.consumer.list_topics(self.config.kafka.frames_topic, timeout=0.5)

    def _on_commit(self, error: KafkaError | None, partitions: list[TopicPartition]) -> None:
        self.partitions.on_commit(error, partitions)

    def _on_kafka_error(self, error: KafkaError) -> None:
        self._kafka_errors(error)  # named (authentication, certificate, ...), once a minute

    # -- status --------------------------------------------------------------
    def _observe(self) -> None:
        self.metrics.in_flight.set(self.calls.in_flight)
        now = time.monotonic()
        if now - self._last_lag < LAG_REFRESH_S:
            return
        self._last_lag = now
        self.metrics.window.set(self.partitions.uncommitted())
        self.metrics.buffered_bytes.set(self.partitions.buffered_bytes())
        for state in self.partitions:
            try:
                _low, high = self.consumer.get_watermark_offsets(
                    TopicPartition(state.topic, state.partition), cached=True
                )
            except KafkaException:
                continue
            position = state.window.next_offset  # frames after it are not admitted yet
            if position is not None and high >= 0:
                self.metrics.lag.labels(str(state.partition)).set(max(0, high - position))

    def status(self) -> str:
        metrics = self.metrics
        ok, failed, skipped = (
            counted(metrics.results, status=s) for s in ("ok", "failed", "skipped")
        )
        per_s = self._rate.update(ok + failed + skipped)
        order = "per camera" if self.calls.ordered else "free"
        text = (
            f"{len(self.partitions.states)} partitions ({self.partitions.paused()} paused); "
            f"{self.calls.in_flight} in flight, {self.partitions.uncommitted()} uncommitted, "
            f"{self.partitions.buffered_bytes() // 1024} KiB buffered; "
            f"{per_s:.1f} results/s; ok {ok:.0f}, failed {failed:.0f}, skipped {skipped:.0f}, "
            f"retries {counted(metrics.retries):.0f}, "
            f"dead letters {counted(metrics.dead_letters):.0f}; "
            f"processor {self.calls.processor_state}, order {order}"
        )
        error = self.calls.processor_error
        text = f"{text} ({error})" if error else text
        waiting = self.assignment.waiting_for()
        return f"{waiting}; {text}" if waiting else text


def main(config: VspdConfig, _args: argparse.Namespace) -> int:
    registry = CollectorRegistry()
    stop = StopFlag().install()
    daemon = BrokerDaemon(config, registry)
    return serve(daemon, stop, config, registry, config.metrics.broker_port)
