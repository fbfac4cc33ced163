"""What an earlier owner of a partition already wrote: read from the results topic's tail.

When a frames partition is assigned, frames from its committed offset on are
processed again. Some of them may have results already (the earlier owner
wrote them and died before committing). Their results are in one results
partition (the frames partition's number modulo the results topic's size, see
outputs.py), each with a ``vspd-source`` header. Reading that partition
backwards, in growing chunks, until a result from before the committed offset
shows up, yields exactly the offsets not to write again, and each camera's
last result there: its detections and track ids let tracking continue where
the earlier owner left off (see vspd.tracking).

The first read starts at the high watermark minus a chunk and runs to
partition EOF, never up to the watermark: some brokers report it loosely
(one short, or far too low), which only makes that read longer. Earlier
chunks are bounded: the scan stops after ``max_records`` records.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import structlog
from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from vspd import wire
from vspd.config.model import KafkaConfig
from vspd.runtime.kafka import consumer_settings
from vspd.v1 import result_pb2

log = structlog.get_logger(__name__)

READ_TIMEOUT_S = 10.0
# Enough for every window of every frames partition that shares a results
# partition, many times over; a bound, so that a huge topic never stalls an assignment.
MAX_RECORDS = 50_000


@dataclass
class Recovered:
    written: set[int] = field(default_factory=set)  # source offsets with a result already
    last_results: dict[str, result_pb2.Result] = field(default_factory=dict)  # per camera


class WrittenResults:
    """Finds the results that were written for a partition but not committed."""

    def __init__(self, kafka: KafkaConfig, max_records: int = MAX_RECORDS) -> None:
        self._kafka = kafka
        self._max_records = max_records
        self._reader = Consumer(
            consumer_settings(
                kafka,
                "vspd-broker-recovery",
                f"vspd-broker-recovery-{uuid.uuid4().hex}",  # never joins or commits
                **{"enable.partition.eof": True, "fetch.wait.max.ms": 10},
            )
        )

    def close(self) -> None:
        self._reader.close()

    def find(
        self, frames_topic: str, frames_partition: int, committed: int, results_partitions: int
    ) -> Recovered:
        """Source offsets >= committed of this frames partition that have a result already,
        and the last result of each of its cameras."""
        if results_partitions <= 0:
            return Recovered()
        partition = TopicPartition(self._kafka.results_topic, frames_partition % results_partitions)
        try:
            low, high = self._reader.get_watermark_offsets(partition, timeout=READ_TIMEOUT_S)
        except KafkaException as exc:
            log.warning("cannot read the results topic's tail", error=str(exc))
            return Recovered()
        found: set[int] = set()
        last: dict[bytes, tuple[int, bytes]] = {}  # camera key -> (source offset, value)
        end = high + 1  # loose watermarks: the first chunk is read to EOF
        chunk = 64
        scanned = 0
        while end > low and scanned < self._max_records:
            start = max(low, end - chunk)
            done, count = self._read(
                partition,
                start,
                end,
                scanned == 0,
                (frames_topic, frames_partition, committed),
                found,
                last,
            )
            scanned += count
            if done:
                break
            end = start
            chunk *= 2
        if found:
            log.info(
                "results already written",
                partition=frames_partition,
                from_offset=committed,
                count=len(found),
            )
        return Recovered(found, _decoded(last))

    def _read(
        self,
        partition: TopicPartition,
        start: int,
        end: int,
        to_eof: bool,
        wanted: tuple[str, int, int],
        found: set[int],
        last: dict[bytes, tuple[int, bytes]],
    ) -> tuple[bool, int]:
        """Look at [start, end) (or to EOF); True once a result older than wanted was seen."""
        frames_topic, frames_partition, committed = wanted
        self._reader.assign([TopicPartition(partition.topic, partition.partition, start)])
        older = False
        count = 0
        deadline = time.monotonic() + READ_TIMEOUT_S
        try:
            while time.monotonic() < deadline:
                message: Any = self._reader.poll(0.5)
                if message is None:
                    continue
                error = message.error()
                if error is not None:
                    if error.code() == KafkaError._PARTITION_EOF:
                        break
                    log.warning("reading the results topic", error=error.str())
                    break
                if message.offset() >= end and not to_eof:
                    break
                count += 1
                source = wire.source_of(message.headers())
                if source is None or source[0] != frames_topic or source[1] != frames_partition:
                    continue
                if source[2] >= committed:
                    found.add(source[2])
                else:
                    older = True
                key = message.key() or b""
                if source[2] >= last.get(key, (-1, b""))[0]:
                    last[key] = (source[2], message.value() or b"")
        finally:
            self._reader.unassign()
        return older, count


def _decoded(last: dict[bytes, tuple[int, bytes]]) -> dict[str, result_pb2.Result]:
    """Each camera's last result, if it is a valid one (a forged one is skipped)."""
    results = {}
    for _offset, value in last.values():
        try:
            result = wire.decode_result(value)
        except wire.BadMessageError:
            continue
        results[result.frame.camera_id] = result
    return results
