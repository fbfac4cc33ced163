"""`vspd topics create` against the real broker: creates, then changes nothing."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from confluent_kafka.admin import AdminClient

from tests.support.kafka import unique_name


def test_topics_create_is_idempotent_and_says_what_exists(
    bootstrap: str, write_config: Callable[..., Path]
) -> None:
    names = {
        "frames_topic": unique_name("frames"),
        "results_topic": unique_name("results"),
        "dead_letter_topic": unique_name("dead"),
    }
    config = write_config(topics=names, kafka={"partitions": 3})
    command = [sys.executable, "-m", "vspd", "--config", str(config), "topics", "create"]

    first = subprocess.run(command, capture_output=True, text=True, check=False)
    assert first.returncode == 0, first.stderr
    assert first.stdout.splitlines() == [
        f"created: {name} (3 partitions)" for name in names.values()
    ]
    metadata = AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=10)
    assert all(len(metadata.topics[name].partitions) == 3 for name in names.values())

    second = subprocess.run(command, capture_output=True, text=True, check=False)
    assert second.returncode == 0, second.stderr
    assert second.stdout.splitlines() == [
        f"exists: {name} (3 partitions)" for name in names.values()
    ]


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
    assert run.stderr.startswith("vspd topics: cannot use Kafka at 127.0.0.1:1: unreachable")
    assert run.stderr.count("\n") == 1
