"""`vspd status` and the topic reader, against the real broker: health from Kafka alone."""

from __future__ import annotations

import re
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from confluent_kafka import Consumer, Producer, TopicPartition

from tests.support.frames import camera_frame
from tests.support.kafka import produce, read_to_end
from vspd.config import load_config
from vspd.runtime.topic_reader import TopicReader

SECOND = 1_000_000_000


def commit_everything(bootstrap: str, group: str, topic: str, partitions: int) -> None:
    """What a daemon of that group does once it has done all: commit each partition's end."""
    # The ends read to partition EOF: the test broker's watermarks are loose.
    ends = dict.fromkeys(range(partitions), 0)
    for record in read_to_end(bootstrap, topic):
        ends[record.partition] = max(ends[record.partition], record.offset + 1)
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        offsets = [TopicPartition(topic, p, end) for p, end in ends.items()]
        consumer.commit(offsets=offsets, asynchronous=False)
    finally:
        consumer.close()


def status(config: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "vspd", "status", "--config", str(config), *extra],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


def test_status_names_stale_cameras_gaps_lag_and_dead_letters(
    bootstrap: str, fresh_topics: Callable[..., dict[str, str]], write_config: Callable[..., Path]
) -> None:
    topics = fresh_topics(partitions=2)
    now = time.time_ns()
    door, gate = str(uuid.uuid4()), str(uuid.uuid4())
    # door: 10 fps until now, seq 10 lost before Kafka; gate: its last frame 10 minutes ago.
    messages = [
        camera_frame("door", door, seq, now - (30 - seq) * SECOND // 10)
        for seq in range(30)
        if seq != 10
    ]
    messages += [
        camera_frame("gate", gate, seq, now - 600 * SECOND + seq * SECOND) for seq in range(5)
    ]
    produce(bootstrap, topics["frames_topic"], messages)
    produce(bootstrap, topics["dead_letter_topic"], [(None, b"dead 1"), (None, b"dead 2")])
    config = write_config(
        topics=topics,
        cameras=[
            {"id": "door", "source": "synthetic:"},
            {"id": "gate", "source": "synthetic:"},
            {"id": "attic", "source": "synthetic:"},
        ],
        broker={"group_id": f"broker-{topics['frames_topic']}"},
        alerts={"group_id": f"alerts-{topics['frames_topic']}"},
    )
    # The broker's group has done everything; the alerts daemon never ran.
    commit_everything(bootstrap, f"broker-{topics['frames_topic']}", topics["frames_topic"], 2)

    run = status(config)

    assert run.returncode == 1, run.stdout + run.stderr
    lines = run.stdout.splitlines()
    door_line = next(line for line in lines if line.startswith("door "))
    fields = door_line.split()
    assert fields[-1] == "ok"
    assert 9.0 <= float(fields[-3]) <= 11.0  # fps from the capture times
    assert fields[-2] == "1"  # the one seq lost before Kafka
    assert re.match(
        r"gate +10 min ago .* STALE$", next(line for line in lines if line.startswith("gate "))
    )
    assert re.match(
        r"attic +never seen +- +- +STALE$",
        next(line for line in lines if line.startswith("attic ")),
    )
    assert (
        f"broker  group broker-{topics['frames_topic']} on {topics['frames_topic']}: 0 behind  ok"
        in lines
    )
    assert any(
        line.startswith("alerts  group") and "nothing committed yet" in line for line in lines
    )
    assert "dead letters in the last hour: 2" in lines
    assert lines[-1].startswith(
        "3 problem(s): camera gate stale (10 min ago); camera attic stale (never seen); alerts group"
    )


def test_status_exits_0_when_everything_is_fresh_and_done(
    bootstrap: str, fresh_topics: Callable[..., dict[str, str]], write_config: Callable[..., Path]
) -> None:
    topics = fresh_topics(partitions=2)
    now = time.time_ns()
    session = str(uuid.uuid4())
    produce(
        bootstrap,
        topics["frames_topic"],
        [camera_frame("door", session, s, now - (9 - s) * SECOND // 10) for s in range(10)],
    )
    groups = {"broker": f"b-{topics['frames_topic']}", "alerts": f"a-{topics['frames_topic']}"}
    config = write_config(
        topics=topics,
        broker={"group_id": groups["broker"]},
        alerts={"group_id": groups["alerts"]},
    )
    commit_everything(bootstrap, groups["broker"], topics["frames_topic"], 2)
    commit_everything(bootstrap, groups["alerts"], topics["results_topic"], 2)

    run = status(config)

    assert run.returncode == 0, run.stdout + run.stderr
    assert run.stdout.splitlines()[-1] == "ok"
    # And a lag over the threshold is a problem: ten frames behind, at most five allowed.
    commit_nothing_group = f"b2-{topics['frames_topic']}"
    lagging = write_config(
        "lagging.toml",
        topics=topics,
        broker={"group_id": commit_nothing_group},
        alerts={"group_id": groups["alerts"]},
    )
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": commit_nothing_group})
    consumer.commit(
        offsets=[TopicPartition(topics["frames_topic"], p, 0) for p in range(2)], asynchronous=False
    )
    consumer.close()
    behind = status(lagging, "--max-lag", "5")
    assert behind.returncode == 1
    assert "10 behind  LAGGING" in behind.stdout
    assert "broker lagging: 10 messages behind (more than 5)" in behind.stdout


def test_offset_for_time_is_right_where_the_broker_answers_wrong(
    bootstrap: str, fresh_topics: Callable[..., dict[str, str]], write_config: Callable[..., Path]
) -> None:
    # The test broker answers offsets_for_times with 0 for every time: checked, then searched.
    topics = fresh_topics(partitions=1)
    producer = Producer({"bootstrap.servers": bootstrap})
    base_ms = int(time.time() * 1000) - 100_000
    for index in range(50):
        producer.produce(
            topics["frames_topic"], b"x", timestamp=base_ms + index * 1000, partition=0
        )
    producer.flush(30)
    config = load_config(write_config(topics=topics), {})
    with TopicReader(config.kafka, "vspd-test") as reader:
        topic = topics["frames_topic"]
        assert reader.offset_for_time(topic, 0, base_ms) == 0
        assert reader.offset_for_time(topic, 0, base_ms + 20_000) == 20
        assert reader.offset_for_time(topic, 0, base_ms + 20_500) == 21
        assert reader.offset_for_time(topic, 0, base_ms + 49_000) == 49
        assert reader.offset_for_time(topic, 0, base_ms + 60_000) == 50  # after the last one
        assert reader.offset_for_time(topic, 0, base_ms - 60_000) == 0
