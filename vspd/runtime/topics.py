"""`vspd topics create`: the configured topics, with the topic-level settings vspd needs.

Apache Kafka applies per topic what the test broker does not enforce: a 1 MB
``max.message.bytes`` by default (frames are larger), a week of retention
(the frames topic is the video store and may need less, or more). Creating
is idempotent; an existing topic's settings are compared and brought up to
date, and every change is reported. Partition counts are never changed (that
would move cameras between partitions and break their order).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic

from vspd.config.model import KafkaConfig
from vspd.errors import KafkaSetupError
from vspd.runtime.kafka import KafkaErrorLog, common_settings, list_topics

HOUR_MS = 3_600_000


@dataclass(frozen=True)
class TopicOutcome:
    topic: str
    created: bool
    partitions: int
    note: str = ""
    # Settings changed on an existing topic: (name, old value, new value).
    changed: tuple[tuple[str, str, str], ...] = field(default=())


def configured_topics(kafka: KafkaConfig) -> list[str]:
    return [kafka.frames_topic, kafka.results_topic, kafka.dead_letter_topic]


def topic_settings(kafka: KafkaConfig, topic: str) -> dict[str, str]:
    """The topic-level settings vspd sets on `topic`."""
    hours, size = kafka.results_retention_hours, kafka.results_retention_bytes
    if topic == kafka.frames_topic:
        hours, size = kafka.frames_retention_hours, kafka.frames_retention_bytes
    return {
        # Frames and results with their image are larger than Kafka's 1 MB default.
        "max.message.bytes": str(kafka.message_max_bytes),
        "retention.ms": str(round(hours * HOUR_MS)),
        "retention.bytes": str(size or -1),
        # JPEG does not shrink: keep what the producer sent rather than recompress.
        "compression.type": kafka.compression if kafka.compression != "none" else "producer",
    }


def create_topics(
    kafka: KafkaConfig, topics: Iterable[str] | None = None, timeout_s: float = 15.0
) -> list[TopicOutcome]:
    """Create what is missing; bring the settings of what exists up to date."""
    errors = KafkaErrorLog("vspd-admin")
    admin = AdminClient({**common_settings(kafka, "vspd-admin"), "error_cb": errors})
    wanted = list(topics if topics is not None else configured_topics(kafka))
    existing = list_topics(admin, kafka, errors, timeout_s)
    outcomes: list[TopicOutcome] = []
    for topic in wanted:
        if topic in existing:
            count = len(existing[topic].partitions)
            note = (
                "" if count == kafka.partitions else f"configured {kafka.partitions}; not changed"
            )
            changed = _bring_up_to_date(admin, topic, topic_settings(kafka, topic), timeout_s)
            outcomes.append(TopicOutcome(topic, False, count, note, changed))
    missing = [topic for topic in wanted if topic not in existing]
    if missing:
        futures = admin.create_topics(
            [
                NewTopic(
                    topic,
                    kafka.partitions,
                    kafka.replication_factor,
                    config=topic_settings(kafka, topic),
                )
                for topic in missing
            ],
            request_timeout=timeout_s,
        )
        for topic, future in futures.items():
            try:
                future.result(timeout=timeout_s)
            except KafkaException as exc:
                error: KafkaError = exc.args[0]
                if error.code() != KafkaError.TOPIC_ALREADY_EXISTS:
                    raise KafkaSetupError(f"cannot create topic {topic!r}: {error.str()}") from None
                outcomes.append(TopicOutcome(topic, created=False, partitions=kafka.partitions))
                continue
            outcomes.append(TopicOutcome(topic, created=True, partitions=kafka.partitions))
    order = {topic: index for index, topic in enumerate(wanted)}
    return sorted(outcomes, key=lambda outcome: order[outcome.topic])


def _bring_up_to_date(
    admin: AdminClient, topic: str, wanted: dict[str, str], timeout_s: float
) -> tuple[tuple[str, str, str], ...]:
    resource = ConfigResource("topic", topic)
    try:
        current = next(iter(admin.describe_configs([resource]).values())).result(timeout_s)
    except KafkaException as exc:
        raise KafkaSetupError(
            f"cannot read the settings of topic {topic!r}: {exc.args[0].str()}"
        ) from None
    values = {name: entry.value for name, entry in current.items()}
    changed = tuple(
        (name, str(values.get(name, "(default)")), value)
        for name, value in wanted.items()
        if values.get(name) != value
    )
    if not changed:
        return ()
    try:
        _alter(admin, topic, current, {name: new for name, _old, new in changed}, timeout_s)
    except KafkaException as exc:
        raise KafkaSetupError(
            f"cannot change the settings of topic {topic!r}: {exc.args[0].str()}"
        ) from None
    return changed


def _alter(
    admin: AdminClient, topic: str, current: dict[str, Any], new: dict[str, str], timeout_s: float
) -> None:
    if hasattr(admin, "incremental_alter_configs"):  # confluent-kafka >= 2.2
        from confluent_kafka.admin import AlterConfigOpType, ConfigEntry

        entries = [
            ConfigEntry(name, value, incremental_operation=AlterConfigOpType.SET)
            for name, value in new.items()
        ]
        resource = ConfigResource("topic", topic, incremental_configs=entries)
        next(iter(admin.incremental_alter_configs([resource]).values())).result(timeout_s)
        return
    # confluent-kafka 1.7 (Debian trixie): AlterConfigs replaces the topic's whole
    # set, so the settings already made on the topic are sent along with ours.
    kept = {
        name: entry.value
        for name, entry in current.items()
        if entry.source == _DYNAMIC_TOPIC_CONFIG and entry.value is not None
    }
    resource = ConfigResource("topic", topic, set_config={**kept, **new})
    next(iter(admin.alter_configs([resource]).values())).result(timeout_s)


_DYNAMIC_TOPIC_CONFIG = 1  # ConfigSource.DYNAMIC_TOPIC_CONFIG: set on this topic
