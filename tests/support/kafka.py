"""Reading and writing test topics directly, as an outside client would."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    Message,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient, NewTopic


@dataclass(frozen=True)
class Record:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: dict[str, bytes]


def create_topics(bootstrap: str, names: list[str], partitions: int) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics([NewTopic(name, partitions, 1) for name in names])
    for future in futures.values():
        future.result(timeout=30)


def unique_name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def produce(bootstrap: str, topic: str, messages: list[tuple[bytes | None, bytes]]) -> None:
    producer = Producer(
        {"bootstrap.servers": bootstrap, "message.max.bytes": 16_000_000, "linger.ms": 5}
    )
    failures: list[str] = []

    def on_delivery(error: object, _message: object) -> None:
        if error is not None:
            failures.append(str(error))

    for key, value in messages:
        producer.produce(topic, value=value, key=key, on_delivery=on_delivery)
    remaining = producer.flush(30)
    assert remaining == 0, f"{remaining} messages not delivered"
    assert not failures, failures


def read_topic(
    bootstrap: str,
    topic: str,
    until: Callable[[list[Record]], bool],
    timeout_s: float = 60.0,
) -> list[Record]:
    """Everything in the topic from the beginning, read until `until(records)` holds.

    The timeout is a safety net for a broken test, not an assertion: callers
    assert on what was read.
    """
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": unique_name("reader"),
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "fetch.max.bytes": 52_428_800,
            "max.partition.fetch.bytes": 16_000_000,
            "receive.message.max.bytes": 60_000_000,
        }
    )
    try:
        metadata = consumer.list_topics(topic, timeout=10)
        partitions = sorted(metadata.topics[topic].partitions)
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
        records: list[Record] = []
        deadline = time.monotonic() + timeout_s
        while not until(records) and time.monotonic() < deadline:
            message = consumer.poll(0.2)
            if message is None:
                continue
            if message.error():
                continue
            records.append(_record(message))
        return records
    finally:
        consumer.close()


def at_least(count: int) -> Callable[[list[Record]], bool]:
    return lambda records: len(records) >= count


def read_to_end(bootstrap: str, topic: str, timeout_s: float = 60.0) -> list[Record]:
    """Every message in the topic now, in (partition, offset) order.

    Done when every partition has reported its end (partition EOF), which comes
    from the fetch responses; the test broker's watermarks are loose, so they
    are not relied on.
    """
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": unique_name("to-end"),
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            # Tansu holds an empty fetch for the whole wait (500 ms by default): each
            # partition's end would cost that, and callers read whole topics in loops.
            "fetch.wait.max.ms": 10,
            "fetch.max.bytes": 52_428_800,
            "max.partition.fetch.bytes": 16_000_000,
            "receive.message.max.bytes": 60_000_000,
        }
    )
    try:
        metadata = consumer.list_topics(topic, timeout=10)
        partitions = sorted(metadata.topics[topic].partitions) if topic in metadata.topics else []
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
        records: list[Record] = []
        at_end: set[int] = set()
        deadline = time.monotonic() + timeout_s
        while len(at_end) < len(partitions) and time.monotonic() < deadline:
            message = consumer.poll(0.2)
            if message is None:
                continue
            error = message.error()
            if error is not None:
                if error.code() == KafkaError._PARTITION_EOF:
                    at_end.add(message.partition())
                continue
            at_end.discard(message.partition())
            records.append(_record(message))
        return sorted(records, key=lambda record: (record.partition, record.offset))
    finally:
        consumer.close()


def _record(message: Message) -> Record:
    return Record(
        topic=message.topic(),
        partition=message.partition(),
        offset=message.offset(),
        key=message.key(),
        value=message.value(),
        headers=dict(message.headers() or []),
    )
