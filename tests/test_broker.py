"""The processing broker: order, nothing lost, scale-out, failures, poison input."""

from __future__ import annotations

import signal
import urllib.error
import urllib.request
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.support.frames import (
    first_occurrences,
    frames_for,
    results_by_camera,
    scene_frames,
    tiny_jpeg,
    undecodable_frame,
)
from tests.support.kafka import Record
from tests.support.metrics import scrape
from tests.support.pipeline import Pipeline, all_results
from tests.support.processes import DaemonProcess, wait_until
from tests.support.tansu import free_port
from vspd import wire
from vspd.v1 import frame_pb2, result_pb2

CAMERAS = [f"cam-{i}" for i in range(6)]


@pytest.fixture
def pipeline(
    bootstrap: str,
    fresh_topics: Callable[..., dict[str, str]],
    write_config: Callable[..., Path],
    daemons: Callable[..., DaemonProcess],
) -> Callable[..., Pipeline]:
    def make(**settings: Any) -> Pipeline:
        return Pipeline(bootstrap, fresh_topics, write_config, daemons, **settings)

    return make


def assert_in_order_and_complete(
    records: list[Record], cameras: list[str], count: int
) -> dict[str, list[int]]:
    by_camera = results_by_camera(records)
    assert set(by_camera) == set(cameras)
    for camera, seqs in by_camera.items():
        assert first_occurrences(seqs) == list(range(count)), f"{camera}: {seqs}"
    return by_camera


def test_strict_order_per_camera_under_random_latency(pipeline: Callable[..., Pipeline]) -> None:
    line = pipeline(broker={"max_in_flight": 32, "max_in_flight_per_partition": 16})
    line.start_processor()
    broker = line.start_broker()
    line.feed(frames_for(CAMERAS, 60))
    records = line.results(all_results(360))
    by_camera = assert_in_order_and_complete(records, CAMERAS, 60)
    assert all(len(seqs) == 60 for seqs in by_camera.values())  # no duplicates without a crash
    results = [wire.decode_result(r.value) for r in records]
    assert all(r.status == result_pb2.STATUS_OK for r in results)
    assert all(
        r.attributes["seq"] == str(r.frame.seq) for r in results
    )  # each result is its frame's
    assert all(r.frame.image == tiny_jpeg() for r in results)
    assert all(r.processor_name == "tests.plugins.sample:jitter" for r in results)
    # Calls really ran concurrently: the plug-in saw others running beside it.
    assert max(int(r.attributes["overlapping"]) for r in results) > 1
    assert broker.stop() == 0
    assert '"event": "stopped"' in broker.log()


def test_results_can_leave_the_image_out(pipeline: Callable[..., Pipeline]) -> None:
    line = pipeline(partitions=1, broker={"include_image": False})
    line.start_processor()
    line.start_broker()
    line.feed(frames_for(["solo"], 5))
    records = line.results(all_results(5))
    results = [wire.decode_result(r.value) for r in records]
    assert all(not r.frame.image and r.frame.width == 64 for r in results)


def test_kill9_mid_stream_loses_nothing_and_writes_no_result_twice(
    pipeline: Callable[..., Pipeline],
) -> None:
    partitions, per_partition = 4, 8
    line = pipeline(
        partitions=partitions,
        broker={"max_in_flight": 16, "max_in_flight_per_partition": per_partition},
    )
    line.start_processor()
    broker = line.start_broker("broker-a")
    line.feed(frames_for(CAMERAS, 80))
    line.results(all_results(150))
    broker.kill9()
    restarted = line.start_broker("broker-b")
    records = line.results(all_results(480))
    assert restarted.stop() == 0
    by_camera = assert_in_order_and_complete(records, CAMERAS, 80)
    duplicates = sum(len(seqs) - len(set(seqs)) for seqs in by_camera.values())
    # The restarted broker read the results topic's tail and skipped what was written.
    assert duplicates == 0, by_camera
    assert all(seqs == list(range(80)) for seqs in by_camera.values())


def test_two_brokers_share_partitions_and_survive_losing_one(
    pipeline: Callable[..., Pipeline],
) -> None:
    line = pipeline(partitions=4, broker={"max_in_flight": 16, "max_in_flight_per_partition": 8})
    line.start_processor()
    first = line.start_broker("broker-1")
    second = line.start_broker("broker-2")
    first.wait_for_log("partitions assigned")
    second.wait_for_log("partitions assigned")
    line.feed(frames_for(CAMERAS, 40))
    line.results(all_results(240))
    assert '"event": "partitions assigned"' in first.log()
    assert '"event": "partitions assigned"' in second.log()
    owned = [_assigned(first.log()), _assigned(second.log())]
    assert owned[0], owned
    assert owned[1], owned
    assert not owned[0] & owned[1]

    first.kill9()
    line.feed(frames_for(CAMERAS, 40, start=40, session=None))
    records = line.results(all_results(480))
    by_camera = results_by_camera(records)
    for camera, seqs in by_camera.items():
        ordered = first_occurrences(seqs)
        assert sorted(ordered) == list(range(80)), camera
        assert ordered[:40] == list(range(40)), camera
    assert second.stop() == 0


def _assigned(log: str) -> set[int]:
    import json

    owned: set[int] = set()
    for line in log.splitlines():
        if '"partitions assigned"' in line:
            owned |= set(json.loads(line)["partitions"])
        if '"partitions revoked"' in line:
            owned -= set(json.loads(line)["partitions"])
    return owned


def test_poison_and_invalid_frames_go_to_the_dead_letter_topic(
    pipeline: Callable[..., Pipeline],
) -> None:
    line = pipeline(partitions=1)
    line.start_processor()
    line.start_broker()
    undecodable = undecodable_frame("cam-x", 1)
    messages = [
        *frames_for(["cam-x"], 1),
        (b"cam-x", b"\x00\x01garbage that is no Frame"),
        (b"cam-x", undecodable.SerializeToString()),
        (None, b""),
    ]
    line.feed(messages)
    letters = {letter.source_offset: letter for letter in line.dead_letters(3)}
    assert set(letters) == {1, 2, 3}
    garbage, invalid, empty = letters[1], letters[2], letters[3]
    assert garbage.stage == "broker.decode"
    assert garbage.reason.startswith("not a vspd.v1.Frame") or "Frame has no" in garbage.reason
    assert (garbage.source_topic, garbage.source_partition) == (line.topics["frames_topic"], 0)
    assert (garbage.original_key, garbage.original_value) == (
        b"cam-x",
        b"\x00\x01garbage that is no Frame",
    )
    assert (empty.stage, empty.reason, empty.original_key) == (
        "broker.decode",
        "empty message",
        b"",
    )
    assert invalid.stage == "broker.processor"
    assert invalid.reason.startswith("INVALID_ARGUMENT: image does not decode")
    assert invalid.original_value == undecodable.SerializeToString()
    # The invalid frame still has its place in the results, as `failed`.
    records = line.results(lambda r: len(r) >= 2)
    results = [wire.decode_result(r.value) for r in records]
    assert [(r.frame.seq, r.status) for r in results] == [
        (0, result_pb2.STATUS_OK),
        (1, result_pb2.STATUS_FAILED),
    ]
    assert results[1].status_reason.startswith("INVALID_ARGUMENT")


def test_processor_down_for_a_while_loses_nothing(pipeline: Callable[..., Pipeline]) -> None:
    line = pipeline(partitions=2)
    processor = line.start_processor()
    broker = line.start_broker()
    line.feed(frames_for(CAMERAS[:3], 20))
    line.results(all_results(60))
    assert processor.stop() == 0
    line.feed(frames_for(CAMERAS[:3], 20, start=20))
    broker.wait_for_log("processor unavailable; frames wait and are retried")
    line.start_processor()
    broker.wait_for_log('"event": "processor available"')
    records = line.results(all_results(120))
    assert_in_order_and_complete(records, CAMERAS[:3], 40)
    results = [wire.decode_result(r.value) for r in records]
    assert all(r.status == result_pb2.STATUS_OK for r in results)
    assert broker.stop() == 0


def test_stale_frames_become_skipped_results(pipeline: Callable[..., Pipeline]) -> None:
    line = pipeline(partitions=1, broker={"max_frame_age_s": 60.0})
    line.start_processor()
    line.start_broker()
    old = frames_for(["old"], 3)
    stale = []
    for key, value in old:
        frame = wire.decode_frame(value)
        frame.capture_time_unix_ns -= 3600 * 10**9
        stale.append((key, frame.SerializeToString()))
    line.feed([*stale, *frames_for(["old"], 2, start=3)])
    records = line.results(lambda r: len(r) >= 5)
    statuses = [wire.decode_result(r.value).status for r in records]
    assert statuses == [result_pb2.STATUS_SKIPPED] * 3 + [result_pb2.STATUS_OK] * 2


def test_processor_with_only_the_original_detector_contract(
    pipeline: Callable[..., Pipeline],
) -> None:
    line = pipeline(
        partitions=1,
        broker={"processor_api": "detector"},
        processor={"api": "detector", "plugin": "tests.plugins.sample:behave"},
    )
    line.start_processor()
    line.start_broker()
    line.feed(frames_for(["legacy"], 4))
    records = line.results(lambda r: len(r) >= 4)
    results = [wire.decode_result(r.value) for r in records]
    assert [r.frame.seq for r in results] == [0, 1, 2, 3]
    box = results[0].detections[0].box
    # behave() answers a box of half the width and a quarter of the height, in pixels.
    assert (box.x_min, box.y_min, box.x_max, box.y_max) == pytest.approx((0, 0, 0.5, 0.25))
    assert results[0].processor_name == "detector"


def test_sigterm_drains_and_commits_so_a_restart_redoes_nothing(
    pipeline: Callable[..., Pipeline],
) -> None:
    line = pipeline(partitions=2)
    line.start_processor()
    broker = line.start_broker()
    line.feed(frames_for(CAMERAS[:2], 30))
    line.results(all_results(60))
    broker.signal(signal.SIGTERM)
    assert broker.wait(60) == 0
    line.feed(frames_for(CAMERAS[:2], 5, start=30))
    again = line.start_broker("broker-again")
    records = line.results(all_results(70))
    by_camera = assert_in_order_and_complete(records, CAMERAS[:2], 35)
    assert all(len(seqs) == 35 for seqs in by_camera.values())  # nothing processed twice
    assert again.stop() == 0


def test_a_stateful_processor_sees_each_cameras_frames_one_at_a_time_in_order(
    pipeline: Callable[..., Pipeline],
) -> None:
    cameras = [f"ordered-{i}" for i in range(8)]
    line = pipeline(
        partitions=4,
        broker={"max_in_flight": 32},  # ordered_calls = "auto": the processor declares it
        processor={"plugin": "tests.plugins.sample:strict_order", "workers": 32},
    )
    line.feed(frames_for(cameras, 125))  # a backlog of 1,000 frames before the broker starts
    line.start_processor()
    broker = line.start_broker()
    records = line.results(all_results(1000))
    assert_in_order_and_complete(records, cameras, 125)
    results = [wire.decode_result(r.value) for r in records]
    failures = [r.status_reason for r in results if r.status != result_pb2.STATUS_OK]
    assert failures == []  # the plug-in raises on any frame that is not its camera's next
    assert '"ordered_per_camera": true' in broker.log()
    assert broker.stop() == 0


def test_a_frame_over_the_processors_limit_is_dead_lettered_not_retried(
    pipeline: Callable[..., Pipeline],
    write_config: Callable[..., Path],
    daemons: Callable[..., DaemonProcess],
) -> None:
    line = pipeline(partitions=1)
    # This processor accepts frames up to 1 MB; the broker's Kafka limit is 8 MiB.
    small = write_config(
        name="small-processor.toml",
        topics=line.topics,
        kafka={"message_max_bytes": 1_000_000},
        processor={
            "listen": f"127.0.0.1:{line.processor_port}",
            "plugin": "tests.plugins.sample:behave",
        },
    )
    daemons("--config", str(small), "processor", name="processor").wait_for_log(
        '"event": "serving"'
    )
    line.start_broker()
    big = frame_pb2.Frame.FromString(frames_for(["big"], 1)[0][1])
    big.image += b"\0" * 2_000_000
    line.feed([(b"big", big.SerializeToString()), *frames_for(["big"], 1, start=1)])
    (letter,) = line.dead_letters(1)
    assert letter.stage == "broker.processor"
    assert "RESOURCE_EXHAUSTED" in letter.reason
    assert "larger than max" in letter.reason
    records = line.results(lambda r: len(r) >= 2)
    statuses = [wire.decode_result(r.value).status for r in records]
    assert statuses == [result_pb2.STATUS_FAILED, result_pb2.STATUS_OK]


def test_a_dead_letter_of_a_huge_message_is_truncated_to_fit(
    pipeline: Callable[..., Pipeline],
) -> None:
    line = pipeline(partitions=1)
    line.start_processor()
    broker = line.start_broker()
    garbage = b"\xff" * (8 * 1024 * 1024 - 200)  # fits Kafka, but not inside a dead letter
    line.feed([(b"cam-x", garbage), *frames_for(["cam-x"], 2)])
    (letter,) = line.dead_letters(1)
    assert letter.stage == "broker.decode"
    assert "original truncated from" in letter.reason
    assert 0 < len(letter.original_value) < len(garbage)
    assert letter.original_value == garbage[: len(letter.original_value)]
    records = line.results(lambda r: len(r) >= 2)
    assert [wire.decode_result(r.value).frame.seq for r in records] == [0, 1]
    assert broker.stop() == 0


def test_a_buggy_processors_numbers_are_made_valid_not_passed_on(
    pipeline: Callable[..., Pipeline],
) -> None:
    line = pipeline(partitions=1, processor={"plugin": "tests.plugins.sample:sloppy"})
    line.start_processor()
    line.start_broker()
    line.feed(frames_for(["sloppy"], 1))
    (record,) = line.results(lambda r: len(r) >= 1)
    result = wire.decode_result(record.value)  # validates: it would raise on NaN or 1.7
    first, second = result.detections
    assert (first.confidence, second.confidence) == (0.0, 1.0)
    box = first.box
    assert (box.x_min, box.y_min, box.x_max, box.y_max) == pytest.approx((0.1, 0.8, 0.9, 1.0))


def track_ids_per_object(records: list[Record]) -> dict[tuple[str, int], set[int]]:
    """(camera, true object) -> the track ids its detections got (the truth plug-in answers in
    object order, so detection i is object i)."""
    ids: dict[tuple[str, int], set[int]] = defaultdict(set)
    for record in records:
        result = wire.decode_result(record.value)
        for index, detection in enumerate(result.detections):
            assert detection.HasField("track_id"), f"{result.frame.seq}: no track id"
            ids[(result.frame.camera_id, index)].add(detection.track_id)
    return ids


def test_tracks_are_made_in_capture_order_and_survive_a_kill9(
    pipeline: Callable[..., Pipeline],
) -> None:
    """Calls finish out of order (32 in flight, random delays); tracks are made at the
    in-order head, so each object keeps one id, through a kill -9 and a new broker."""
    cameras = ["yard", "gate"]
    line = pipeline(
        partitions=2,
        broker={"max_in_flight": 32, "max_in_flight_per_partition": 32},
        processor={"plugin": "tests.plugins.sample:truth"},
    )
    line.start_processor()
    first = line.start_broker("broker-a")
    line.feed(scene_frames(cameras, 150))
    line.results(all_results(120))
    first.kill9()
    line.start_broker("broker-b")
    records = line.results(all_results(300))
    assert_in_order_and_complete(records, cameras, 150)
    ids = track_ids_per_object(records)
    assert len(ids) == 4  # two objects per camera
    assert all(len(found) == 1 for found in ids.values()), ids  # one id per object, kill or not
    for camera in cameras:
        assert ids[(camera, 0)] != ids[(camera, 1)]


def test_tracks_continue_when_a_second_broker_takes_over_a_partition_mid_track(
    pipeline: Callable[..., Pipeline],
) -> None:
    cameras = ["yard", "gate", "drive", "porch"]
    line = pipeline(
        partitions=2,
        broker={"max_in_flight": 16, "max_in_flight_per_partition": 16},
        processor={"plugin": "tests.plugins.sample:truth"},
    )
    line.start_processor()
    first = line.start_broker("broker-1")
    frames = scene_frames(cameras, 150)
    line.feed(frames[: len(frames) // 2])
    line.results(all_results(250))
    second = line.start_broker("broker-2")  # joins: a partition moves to it, mid-track
    wait_until(lambda: bool(_assigned(second.log())), 60, "a partition for the second broker")
    line.feed(frames[len(frames) // 2 :])
    records = line.results(all_results(600))
    assert {record.partition for record in records} == {0, 1}
    ids = track_ids_per_object(records)
    assert len(ids) == 2 * len(cameras)
    assert all(len(found) == 1 for found in ids.values()), ids
    assert first.stop() == 0
    assert second.stop() == 0


def readyz(port: int) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=10) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as refused:
        return refused.code, refused.read().decode()
    except OSError:
        return 0, ""


def test_a_broker_without_partitions_says_what_it_waits_for_and_is_not_ready(
    pipeline: Callable[..., Pipeline], write_config: Callable[..., Path]
) -> None:
    # One partition, two brokers: one of them gets nothing and must say so.
    line = pipeline(partitions=1)
    line.start_processor()
    ports = [free_port(), free_port()]
    brokers = []
    for index, port in enumerate(ports):
        config = write_config(
            f"broker-{index}.toml",
            topics=line.topics,
            broker={
                "processor_addresses": [f"127.0.0.1:{line.processor_port}"],
                "group_id": f"broker-{line.topics['frames_topic']}",
            },
            metrics={"enabled": True, "broker_port": port},
        )
        brokers.append(line.daemons("--config", str(config), "broker", name=f"broker-{index}"))
    for broker in brokers:
        broker.wait_for_log('"event": "serving"')

    def answers() -> list[tuple[int, str]]:
        return [readyz(port) for port in ports]

    wait_until(lambda: sorted(code for code, _ in answers()) == [200, 503], 60, "one ready")
    (ready_port, idle_port) = ports if answers()[0][0] == 200 else ports[::-1]
    idle = brokers[ports.index(idle_port)]
    code, body = readyz(idle_port)
    group = f"broker-{line.topics['frames_topic']}"
    assert code == 503
    assert body.startswith(
        f"not ready: waiting for partition assignment from group {group} "
        f"(topic {line.topics['frames_topic']}) for "
    )
    assert scrape(idle_port, "vspd_broker_assigned_partitions") == 0
    assert scrape(ready_port, "vspd_broker_assigned_partitions") == 1
    assert readyz(ready_port) == (200, "ready\n")
    # Alive all the same: liveness is not readiness.
    with urllib.request.urlopen(f"http://127.0.0.1:{idle_port}/healthz", timeout=10) as alive:
        assert alive.status == 200
    # And the log says it, once in a while, without being asked.
    idle.wait_for_log("waiting for partition assignment from group")


def test_a_fast_processor_gets_batches_and_a_bad_frame_fails_alone(
    pipeline: Callable[..., Pipeline], write_config: Callable[..., Path]
) -> None:
    # A backlog for a fast processor: frames waiting together go in ProcessBatch calls;
    # an undecodable image among them is its own dead letter, its neighbours are fine.
    line = pipeline(partitions=1, processor={"plugin": "tests.plugins.sample:behave"})
    cameras = CAMERAS[:4]
    bad = undecodable_frame("cam-bad", 0)
    messages = frames_for(cameras, 50)
    messages.insert(101, (b"cam-bad", bad.SerializeToString()))
    line.feed(messages)
    line.start_processor()
    port = free_port()
    config = write_config(
        "batching.toml",
        topics=line.topics,
        broker={
            "processor_addresses": [f"127.0.0.1:{line.processor_port}"],
            "group_id": f"broker-{line.topics['frames_topic']}",
        },
        metrics={"enabled": True, "broker_port": port},
    )
    broker = line.daemons("--config", str(config), "broker", name="broker")
    broker.wait_for_log('"event": "serving"')

    records = line.results(all_results(201))
    assert_in_order_and_complete(
        [r for r in records if wire.decode_result(r.value).frame.camera_id != "cam-bad"],
        cameras,
        50,
    )
    (letter,) = line.dead_letters(1)
    assert letter.stage == "broker.processor"
    assert letter.reason.startswith("INVALID_ARGUMENT: image does not decode")
    assert letter.source_offset == 101
    assert scrape(port, "vspd_broker_batch_frames_count") >= 1  # batches were used
    # A frame's age is observed once, when its first call starts.
    assert scrape(port, "vspd_broker_frame_age_seconds_count") == 201
    assert scrape(port, "vspd_broker_batch_frames_sum") >= 2 * scrape(
        port, "vspd_broker_batch_frames_count"
    )
