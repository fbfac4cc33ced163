"""Hostile input is normal input: malformed and malicious messages through a real broker and alerts.

The fuzz test interleaves thousands of bad frames (frames topic) and bad
results (results topic) with good frames, seeded, through a real processor,
broker and alerts daemon on the test broker. No daemon exits; every bad
message is dead-lettered with its reason; every good frame's result and alert
arrive once, in order; nothing is written outside the configured directories;
the reports link only inside themselves. `--fuzz-messages N --fuzz-seed S` by hand.
"""

from __future__ import annotations

import math
import random
import struct
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.support.frames import frames_for, results_by_camera, tiny_jpeg
from tests.support.kafka import Record, produce, read_topic
from tests.support.peers import WebhookReceiver
from tests.support.processes import DaemonProcess, wait_until
from tests.support.tansu import free_port
from vspd import wire
from vspd.v1 import frame_pb2, result_pb2

GOOD_CAMERAS = [f"good-{i}" for i in range(4)]
GOOD_FRAMES = 40  # per camera
EVIL_IDS = [
    "cam\x00nul",
    "x" * 300,
    "../../../escaped",
    "/proc/x",
    "javascript:alert(1)",
    "a\r\nX-Injected: 1",
    "",
    ".hidden",
]


def _fuzz_frame(rng: random.Random) -> frame_pb2.Frame:
    """A well-formed frame of the fuzz camera, for the generators to spoil."""
    return frame_pb2.Frame(
        camera_id="fuzz",
        session_id="s",
        seq=rng.randrange(1000),
        width=64,
        height=48,
        encoding=frame_pb2.ENCODING_JPEG,
        image=tiny_jpeg(),
    )


def hostile_frame(rng: random.Random) -> bytes:
    """One frames-topic message that must be dead-lettered."""
    kind = rng.randrange(9)
    if kind == 0:
        return rng.randbytes(rng.randrange(0, 300))
    frame = _fuzz_frame(rng)
    if kind == 1:
        frame.camera_id = rng.choice(EVIL_IDS)
    elif kind == 2:
        frame.session_id = rng.choice(EVIL_IDS[:5])
    elif kind == 3:
        frame.seq = 2**63 + rng.randrange(1000)
    elif kind == 4:
        frame.width, frame.height = 100_000, 100_000
    elif kind == 5:
        frame.encoding = frame_pb2.ENCODING_RAW_BGR24  # the size cannot match
    elif kind == 6:
        frame.ClearField("image")
    elif kind == 7:
        frame.encoding = 99  # type: ignore[assignment]
    else:
        return frame.SerializeToString()[: rng.randrange(1, 20)] + b"\xff\xff\xff"
    return frame.SerializeToString()


def hostile_result(rng: random.Random) -> bytes:
    """One results-topic message that must be rejected and dead-lettered by alerts."""
    kind = rng.randrange(6)
    if kind == 0:
        return rng.randbytes(rng.randrange(1, 300))
    result = result_pb2.Result(status=result_pb2.STATUS_OK)
    result.frame.CopyFrom(_fuzz_frame(rng))
    detection = result.detections.add(label="thing", confidence=0.9)
    detection.box.x_min, detection.box.y_min, detection.box.x_max, detection.box.y_max = (
        0.1,
        0.1,
        0.5,
        0.5,
    )
    if kind == 1:
        result.frame.camera_id = rng.choice(EVIL_IDS)
    elif kind == 2:
        detection.box.x_max = rng.choice([math.nan, math.inf, -math.inf, 7.0])
    elif kind == 3:
        detection.confidence = rng.choice([math.nan, math.inf, 2.0])
    elif kind == 4:
        result.frame.encoding = frame_pb2.ENCODING_RAW_BGR24  # 64x48x3 bytes it has not
    else:
        result.frame.seq = 2**63 + 5
    return result.SerializeToString()


def huge_declared_jpeg() -> bytes:
    """A few hundred bytes that declare a 20000x20000 image."""
    data = bytearray(tiny_jpeg())
    index = 2
    while True:
        marker, length = data[index + 1], struct.unpack(">H", data[index + 2 : index + 4])[0]
        if marker in (0xC0, 0xC2):
            data[index + 5 : index + 9] = struct.pack(">HH", 20000, 20000)
            return bytes(data)
        index += 2 + length


def test_fuzz_through_broker_and_alerts(
    request: pytest.FixtureRequest,
    bootstrap: str,
    fresh_topics: Callable[..., dict[str, str]],
    write_config: Callable[..., Path],
    daemons: Callable[..., DaemonProcess],
    tmp_path: Path,
) -> None:
    count = int(request.config.getoption("--fuzz-messages"))
    seed = request.config.getoption("--fuzz-seed")
    seed = random.randrange(1_000_000) if seed is None else int(seed)
    print(f"fuzz: seed {seed}, {count} hostile messages (rerun: --fuzz-seed {seed})")
    rng = random.Random(seed)
    topics = fresh_topics(partitions=2)
    port = free_port()
    receiver = WebhookReceiver()
    owned = tmp_path / "owned"  # the only place the alerts daemon may write
    config = write_config(
        topics=topics,
        broker={
            "processor_addresses": [f"127.0.0.1:{port}"],
            "group_id": f"fuzz-{seed}",
            "call_timeout_s": 5.0,
        },
        processor={"listen": f"127.0.0.1:{port}", "plugin": "tests.plugins.sample:behave"},
        alerts={
            "state_dir": str(owned / "state"),
            "reports_dir": str(owned / "reports"),
            "group_id": f"fuzz-alerts-{seed}",
            "rules": [{"name": "thing", "labels": ["thing"], "cooldown_s": 0}],
            "sinks": [{"type": "webhook", "name": "hook", "url": receiver.url}],
        },
    )
    processor = daemons("--config", str(config), "processor", name="processor")
    processor.wait_for_log('"event": "serving"')
    broker = daemons("--config", str(config), "broker", name="broker")
    alerts = daemons("--config", str(config), "alerts", name="alerts")
    broker.wait_for_log("partitions assigned")
    alerts.wait_for_log("consuming")

    # Frames topic: good frames in order per camera, hostile messages between them,
    # plus frames the processor must refuse (undecodable, or declaring 400 megapixels).
    good = frames_for(GOOD_CAMERAS, GOOD_FRAMES)
    frame_messages: list[tuple[bytes | None, bytes]] = []
    hostile_frames = 0
    for message in good:
        for _ in range(rng.randrange(0, count // len(good) + 1)):
            frame_messages.append((rng.choice([b"fuzz", None, b"\x00" * 8]), hostile_frame(rng)))
            hostile_frames += 1
        frame_messages.append(message)
    refused = frame_pb2.Frame.FromString(frames_for(["refused"], 1)[0][1])
    for seq, image in enumerate([b"\xff\xd8\xffnot really a jpeg", huge_declared_jpeg()]):
        refused.seq, refused.image = seq, image
        frame_messages.append((b"refused", refused.SerializeToString()))
    # Results topic: hostile results straight from "an attacker with access to one topic",
    # and one forged result far ahead for a live camera's session.
    forged = wire.decode_result(_good_result(good[0][1]))
    forged.frame.seq = 10**6
    result_messages = [(b"fuzz", hostile_result(rng)) for _ in range(count // 2)]
    half = len(result_messages) // 2
    produce(
        bootstrap,
        topics["results_topic"],
        [(b"good-0", forged.SerializeToString()), *result_messages[:half]],
    )
    produce(bootstrap, topics["frames_topic"], frame_messages)
    produce(bootstrap, topics["results_topic"], result_messages[half:])
    hostile_results = len(result_messages)

    expected_letters = hostile_frames + 2 + hostile_results
    letters = read_topic(
        bootstrap, topics["dead_letter_topic"], lambda r: len(r) >= expected_letters, 300
    )
    results = read_topic(
        bootstrap,
        topics["results_topic"],
        lambda r: sum(_is_good(x) for x in r) >= len(good),
        120,
    )
    wait_until(lambda: len(receiver.event_ids()) >= len(good), 120, "an alert per good frame")
    assert processor.process is not None
    assert broker.process is not None
    assert alerts.process is not None
    assert processor.process.poll() is None, processor.log()[-3000:]
    assert broker.process.poll() is None, broker.log()[-3000:]
    assert alerts.process.poll() is None, alerts.log()[-3000:]

    decoded = [wire.DeadLetter.FromString(r.value or b"") for r in letters]
    stages = Counter(letter.stage for letter in decoded)
    assert all(letter.reason for letter in decoded)
    assert stages["broker.decode"] == hostile_frames, stages
    assert stages["broker.processor"] == 2, stages  # the undecodable and the 400-megapixel JPEG
    assert stages["alerts.decode"] == hostile_results, stages
    pixel_letters = [d for d in decoded if "over the limit of" in d.reason]
    assert len(pixel_letters) == 1

    # Every good frame: one result, in capture order; one alert each, none twice
    # (the forged seq 10^6 did not make the genuine results "replays").
    good_records = [r for r in results if _is_good(r)]
    by_camera = results_by_camera(good_records)
    assert {camera: seqs for camera, seqs in by_camera.items() if camera in GOOD_CAMERAS} == {
        camera: list(range(GOOD_FRAMES)) for camera in GOOD_CAMERAS
    }
    delivered = Counter(receiver.event_ids())
    wanted = {
        f"thing/{camera}/{session}/{seq}"
        for camera, session, seq in (
            wire.frame_id(wire.decode_frame(value)) for _key, value in good
        )
    }
    assert wanted <= set(delivered)
    assert all(n == 1 for n in delivered.values()), delivered.most_common(3)

    assert broker.stop() == 0
    assert alerts.stop() == 0  # its drain writes the reports
    assert processor.stop() == 0
    # Nothing outside the daemon's own directories; reports link only inside themselves.
    assert sorted(p.name for p in owned.iterdir()) == ["reports", "state"]
    for path in owned.rglob("*"):
        assert path.resolve().is_relative_to(owned.resolve()), path
    assert not list(tmp_path.glob("**/escaped*"))
    index = (owned / "reports" / "index.html").read_text()
    assert "javascript:" not in index.replace("javascript%3A", "")
    receiver.close()


def _good_result(frame_value: bytes) -> bytes:
    result = result_pb2.Result(status=result_pb2.STATUS_OK)
    result.frame.CopyFrom(wire.decode_frame(frame_value))
    return result.SerializeToString()


def _is_good(record: Record) -> bool:
    try:
        result = wire.decode_result(record.value)
    except wire.BadMessageError:
        return False
    return result.frame.camera_id in GOOD_CAMERAS and result.frame.seq < GOOD_FRAMES
