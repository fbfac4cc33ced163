"""`vspd topics create` against the real broker: creates, then changes nothing."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from confluent_kafka.admin import AdminClient, ConfigResource

from tests.support.kafka import unique_name


def topic_config(bootstrap: str, topic: str) -> dict[str, str]:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    future = admin.describe_configs([ConfigResource("topic", topic)])
    return {name: entry.value for name, entry in next(iter(future.values())).result(10).items()}


def test_topics_create_sets_what_vspd_needs_then_says_what_changed(
    bootstrap: str, write_config: Callable[..., Path]
) -> None:
    names = {
        "frames_topic": unique_name("frames"),
        "results_topic": unique_name("results"),
        "dead_letter_topic": unique_name("dead"),
    }
    kafka = {
        "partitions": 3,
        "frames_retention_hours": 12.0,
        "frames_retention_bytes": 5_000_000_000,
    }
    config = write_config(topics=names, kafka=kafka)
    command = [sys.executable, "-m", "vspd", "--config", str(config), "topics", "create"]

    first = subprocess.run(command, capture_output=True, text=True, check=False)

    assert first.returncode == 0, first.stderr
    frames, results, dead = names.values()
    limit = "max.message.bytes=8388608"
    assert first.stdout.splitlines() == [
        f"created: {frames} (3 partitions): {limit} retention.ms=43200000 "
        "retention.bytes=5000000000 compression.type=producer",
        f"created: {results} (3 partitions): {limit} retention.ms=604800000 "
        "retention.bytes=-1 compression.type=producer",
        f"created: {dead} (3 partitions): {limit} retention.ms=604800000 "
        "retention.bytes=-1 compression.type=producer",
    ]
    metadata = AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=10)
    assert all(len(metadata.topics[name].partitions) == 3 for name in names.values())
    # Apache Kafka's 1 MB default would refuse frames: the topic says so itself.
    assert topic_config(bootstrap, frames)["max.message.bytes"] == "8388608"
    assert topic_config(bootstrap, frames)["retention.ms"] == "43200000"

    second = subprocess.run(command, capture_output=True, text=True, check=False)
    assert second.returncode == 0, second.stderr
    assert second.stdout.splitlines() == [
        f"exists: {name} (3 partitions): settings up to date" for name in names.values()
    ]

    # A changed retention is brought up to date, and said; partitions are never changed.
    changed = write_config(
        "changed.toml",
        topics=names,
        kafka={**kafka, "partitions": 4, "frames_retention_hours": 1.0},
    )
    third = subprocess.run(
        [sys.executable, "-m", "vspd", "topics", "create", "--config", str(changed)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert third.returncode == 0, third.stderr
    assert third.stdout.splitlines() == [
        f"exists: {frames} (3 partitions; configured 4; not changed): "
        "changed retention.ms 43200000 -> 3600000",
        f"exists: {results} (3 partitions; configured 4; not changed): settings up to date",
        f"exists: {dead} (3 partitions; configured 4; not changed): settings up to date",
    ]
    assert topic_config(bootstrap, frames)["retention.ms"] == "3600000"
    assert topic_config(bootstrap, frames)["retention.bytes"] == "5000000000"


def test_topics_create_without_kafka_is_one_clear_line(write_config: Callable[..., Path]) -> None:
    config = write_config(kafka={"bootstrap_servers": "127.0.0.1:1"})
    run = subprocess.run(
        [sys.executable, "-m", "vspd", "--config", str(config), "topics", "create"],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert run.returncode == 1
    assert "Traceback" not in run.stderr
    assert run.stderr.startswith(
        "vspd topics: cannot use Kafka at 127.0.0.1:1: unreachable: connection refused"
    )
    assert run.stderr.endswith("; is Kafka running, and listening on that address?\n")
    assert run.stderr.count("\n") == 1
    # While it tries, it says what it waits for, once (not a line per retry).
    waiting = [line for line in run.stdout.splitlines() if "waiting for Kafka" in line]
    assert len(waiting) == 1
    assert '"reason": "unreachable: connection refused"' in waiting[0]
