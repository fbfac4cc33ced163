"""Reading a topic by position and by time, without joining a consumer group.

For tools that look at Kafka from outside (`vspd status`, clips, replays):
partitions are assigned explicitly, nothing is committed. Two facts of real
clusters are handled here once:
- ``offsets_for_times`` is checked against the message it points at (a
  Kafka-protocol broker may answer 0 for every time) and replaced by a binary
  search over message timestamps when it is wrong;
- the end of a partition is where the fetch says so (partition EOF), not the
  high watermark, which some brokers report loosely.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from vspd.config.model import KafkaConfig
from vspd.runtime.kafka import consumer_settings

READ_TIMEOUT_S = 10.0
_NOT_THERE = (KafkaError.OFFSET_OUT_OF_RANGE, KafkaError._AUTO_OFFSET_RESET)


@dataclass(frozen=True)
class Record:
    partition: int
    offset: int
    timestamp_ms: int
    key: bytes | None
    value: bytes | None


class TopicReader:
    """One consumer outside any group, for reading partitions at chosen offsets."""

    def __init__(self, kafka: KafkaConfig, client: str, **extra: Any) -> None:
        settings = consumer_settings(kafka, client, f"{client}-{uuid.uuid4().hex}")
        settings.update(
            {
                "enable.partition.eof": True,
                "fetch.wait.max.ms": 50,
                # An offset outside the partition is an answer ("not there"), not a
                # reason to start over at the beginning.
                "auto.offset.reset": "error",
                **extra,
            }
        )
        self._consumer = Consumer(settings)

    def close(self) -> None:
        self._consumer.close()

    def __enter__(self) -> TopicReader:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    @property
    def consumer(self) -> Consumer:
        return self._consumer

    def partitions(self, topic: str) -> list[int]:
        metadata = self._consumer.list_topics(topic, timeout=READ_TIMEOUT_S)
        found = metadata.topics.get(topic)
        if found is None or found.error is not None:
            return []
        return sorted(found.partitions)

    def watermarks(self, topic: str, partition: int) -> tuple[int, int]:
        """(first offset, end offset): the end as the fetch reports it, not only ListOffsets."""
        low, high = self._consumer.get_watermark_offsets(
            TopicPartition(topic, partition), timeout=READ_TIMEOUT_S
        )
        return int(low), self._end_from(topic, partition, max(int(low), int(high)))

    def _end_from(self, topic: str, partition: int, hint: int) -> int:
        """The partition's end, starting at `hint` (exact on Apache Kafka; short on some brokers)."""
        self._consumer.assign([TopicPartition(topic, partition, hint)])
        end = hint
        deadline = time.monotonic() + READ_TIMEOUT_S
        while time.monotonic() < deadline:
            message = self._consumer.poll(0.2)
            if message is None:
                continue
            error = message.error()
            if error is None:
                end = max(end, int(message.offset() or 0) + 1)  # the hint was short: read on
                continue
            if error.code() == KafkaError._PARTITION_EOF:
                return max(end, int(message.offset() or 0))
            if error.code() in _NOT_THERE:
                return end
        return end

    def read(
        self, topic: str, partition: int, start: int, limit: int | None = None
    ) -> Iterator[Record]:
        """Messages from `start` to the partition's end (or `limit` of them)."""
        self._consumer.assign([TopicPartition(topic, partition, start)])
        count = 0
        deadline = time.monotonic() + READ_TIMEOUT_S
        while limit is None or count < limit:
            message = self._consumer.poll(0.2)
            if message is None:
                if time.monotonic() > deadline:
                    return  # no answer: what was read stands
                continue
            deadline = time.monotonic() + READ_TIMEOUT_S
            error = message.error()
            if error is not None:
                if error.code() == KafkaError._PARTITION_EOF or error.code() in _NOT_THERE:
                    return
                continue
            if (message.offset() or 0) < start:
                continue  # fetched for an earlier assignment of this partition
            count += 1
            yield _record(message)

    def at(self, topic: str, partition: int, offset: int) -> Record | None:
        return next(self.read(topic, partition, offset, limit=1), None)

    def offset_for_time(self, topic: str, partition: int, timestamp_ms: int) -> int:
        """The first offset whose message's timestamp is at or after `timestamp_ms`."""
        low, high = self.watermarks(topic, partition)
        if high <= low:
            return high
        try:
            (answer,) = self._consumer.offsets_for_times(
                [TopicPartition(topic, partition, timestamp_ms)], timeout=READ_TIMEOUT_S
            )
            claimed = answer.offset
        except (KafkaException, ValueError):
            claimed = None
        if claimed is not None and self._is_first_at(
            topic, partition, claimed, timestamp_ms, low, high
        ):
            return high if claimed < 0 else claimed
        return self._search(topic, partition, timestamp_ms, low, high)

    def _is_first_at(
        self, topic: str, partition: int, offset: int, timestamp_ms: int, low: int, high: int
    ) -> bool:
        if offset < 0:  # "no message that late": true only if the last one is earlier
            last = self.at(topic, partition, high - 1)
            return last is None or last.timestamp_ms < timestamp_ms
        here = self.at(topic, partition, offset)
        if here is None or here.timestamp_ms < timestamp_ms:
            return False
        if offset <= low:
            return True
        before = self.at(topic, partition, offset - 1)
        return before is None or before.timestamp_ms < timestamp_ms

    def _search(self, topic: str, partition: int, timestamp_ms: int, low: int, high: int) -> int:
        while low < high:
            middle = (low + high) // 2
            record = self.at(topic, partition, middle)
            if record is None:
                high = middle  # past the end (a loose watermark)
            elif record.timestamp_ms < timestamp_ms:
                low = middle + 1
            else:
                high = middle
        return low


def _record(message: Message) -> Record:
    _kind, timestamp = message.timestamp()
    return Record(
        partition=int(message.partition() or 0),
        offset=int(message.offset() or 0),
        timestamp_ms=int(timestamp),
        key=message.key(),
        value=message.value(),
    )
