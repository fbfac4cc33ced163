"""Event clips read back from the frames topic: real Kafka, the real alerts daemon, a real
webhook receiver, the clip decoded by OpenCV and played by a real headless Chromium."""

from __future__ import annotations

import json
import sqlite3
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest
from confluent_kafka import Producer

from tests.support.browser import Chromium
from tests.support.frames import produce_frames
from tests.support.kafka import unique_name
from tests.support.peers import Mosquitto, SmtpServer, WebhookReceiver
from tests.support.processes import DaemonProcess, wait_until
from tests.support.results import SECOND, result
from tests.support.tansu import free_port
from vspd import wire
from vspd.alerts import store
from vspd.alerts.clips import Collected, choose_codec, collect, describe_missing, encode
from vspd.config.model import KafkaConfig
from vspd.runtime.topic_reader import TopicReader
from vspd.v1 import frame_pb2

FPS = 10
WIDTH, HEIGHT, CELLS = 160, 120, 8
PERSON = ("person", 0.9, (0.3, 0.2, 0.6, 0.9))


def seq_image(seq: int) -> np.ndarray:
    """The seq's low 8 bits as black and white bars: readable back from a lossy video."""
    image = np.zeros((HEIGHT, WIDTH, 3), np.uint8)
    cell = WIDTH // CELLS
    for bit in range(CELLS):
        if seq >> bit & 1:
            image[:, bit * cell : (bit + 1) * cell] = 255
    return image


def read_seq(image: np.ndarray) -> int:
    cell = image.shape[1] // CELLS
    middle = image[image.shape[0] // 4 : 3 * image.shape[0] // 4]
    return sum(
        1 << bit
        for bit in range(CELLS)
        if middle[:, bit * cell + cell // 4 : (bit + 1) * cell - cell // 4].mean() > 127
    )


def frame(camera: str, session: str, seq: int, at_ns: int) -> frame_pb2.Frame:
    ok, jpeg = cv2.imencode(".jpg", seq_image(seq), [cv2.IMWRITE_JPEG_QUALITY, 90])
    assert ok
    return frame_pb2.Frame(
        camera_id=camera,
        session_id=session,
        seq=seq,
        capture_time_unix_ns=at_ns,
        capture_monotonic_ns=at_ns,
        width=WIDTH,
        height=HEIGHT,
        encoding=frame_pb2.ENCODING_JPEG,
        image=jpeg.tobytes(),
    )


def alert_result(item: frame_pb2.Frame, position: tuple[int, int]) -> tuple:
    found = result(item.camera_id, item.seq, [PERSON], session=item.session_id,
                   at_ns=item.capture_time_unix_ns)  # fmt: skip
    found.frame.CopyFrom(item)
    return wire.frame_key(item.camera_id), found.SerializeToString(), position


def produce_results(bootstrap: str, topic: str, frames_topic: str, alerts: list[tuple]) -> None:
    """Results as the broker writes them: with the vspd-source header naming their frame."""
    producer = Producer({"bootstrap.servers": bootstrap, "message.max.bytes": 16_000_000})
    for key, value, (partition, offset) in alerts:
        header = wire.source_header(frames_topic, partition, offset)
        producer.produce(topic, value=value, key=key, headers=[header])
    assert producer.flush(30) == 0


def start_and_alert(
    daemons: Callable[..., DaemonProcess],
    config: Path,
    bootstrap: str,
    topics: dict[str, str],
    alerts: list[tuple[frame_pb2.Frame, tuple[int, int]]],
) -> DaemonProcess:
    """The alerts daemon, clips ready, then a person result for each (frame, its position)."""
    daemon = daemons("--config", str(config), "alerts")
    daemon.wait_for_log('"event": "clips"')
    produce_results(
        bootstrap,
        topics["results_topic"],
        topics["frames_topic"],
        [alert_result(item, position) for item, position in alerts],
    )
    return daemon


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    hook = WebhookReceiver()
    yield hook
    hook.close()


@pytest.fixture
def ntfy() -> Iterator[WebhookReceiver]:
    server = WebhookReceiver()  # a plain HTTP endpoint standing in for an ntfy topic URL
    yield server
    server.close()


@pytest.fixture
def clips_config(
    fresh_topics: Callable[..., dict[str, str]],
    write_config: Callable[..., Path],
    receiver: WebhookReceiver,
    tmp_path: Path,
) -> Callable[..., tuple[Path, dict[str, str]]]:
    def make(*sinks: dict[str, object], **web: object) -> tuple[Path, dict[str, str]]:
        topics = fresh_topics(partitions=2)
        config = write_config(
            topics=topics,
            alerts={
                "group_id": unique_name("alerts"),
                "rules": [{"name": "person", "labels": ["person"], "min_frames": 1}],
                "sinks": [{"type": "webhook", "name": "hook", "url": receiver.url}, *sinks],
                "clip_base_url": "https://nvr.example/clips/",
                "retry_initial_s": 0.2,
                "retry_max_s": 1.0,
            },
            web=web or {"enabled": False},
        )
        return config, topics

    return make


def test_an_alerts_clip_holds_every_frame_of_its_span_in_order_and_plays_in_chromium(
    clips_config: Callable[..., tuple[Path, dict[str, str]]],
    daemons: Callable[..., DaemonProcess],
    bootstrap: str,
    receiver: WebhookReceiver,
    mosquitto: Mosquitto,
    smtp: SmtpServer,
    ntfy: WebhookReceiver,
    tmp_path: Path,
) -> None:
    port = free_port()
    (tmp_path / "smtp-password").write_text(smtp.password)
    config, topics = clips_config(
        {"type": "mqtt", "name": "home", "host": "127.0.0.1", "port": mosquitto.port},
        {
            "type": "email",
            "name": "owner",
            "host": "127.0.0.1",
            "port": smtp.port,
            "ca_file": str(smtp.cert),
            "username": smtp.username,
            "password": f"file:{tmp_path / 'smtp-password'}",
            "sender": "vspd@example.org",
            "recipients": ["owner@example.org"],
        },
        {"type": "ntfy", "name": "phone", "url": ntfy.url},
        enabled=True,
        port=port,
    )
    session = str(uuid.uuid4())
    start = time.time_ns() - 60 * SECOND  # all of it in the past: the clip is due at once
    door = [frame("door", session, seq, start + seq * SECOND // FPS) for seq in range(250)]
    # Another camera in the same topic (and maybe partition): never in door's clip.
    yard = [frame("yard", session, seq, start + seq * SECOND // FPS) for seq in range(250)]
    # The gate camera's frames start 2 s before its alert: 3 s of its clip are not in Kafka.
    gate = [frame("gate", session, seq, start + (80 + seq) * SECOND // FPS) for seq in range(150)]
    positions = produce_frames(bootstrap, topics["frames_topic"], door)
    produce_frames(bootstrap, topics["frames_topic"], yard)
    gate_positions = produce_frames(bootstrap, topics["frames_topic"], gate)
    daemon = start_and_alert(
        daemons,
        config,
        bootstrap,
        topics,
        [(door[100], positions[("door", 100)]), (gate[20], gate_positions[("gate", 20)])],
    )
    wait_until(lambda: len(receiver.clips()) == 2, 120, "both clips' follow-ups")
    clips = {clip["camera"]: clip for clip in receiver.clips()}
    alerts = {r.json["camera"]: r for r in receiver.accepted if "type" not in r.json}
    assert set(alerts) == {"door", "gate"}  # the alerts went first, at once, with snapshots

    door_clip = clips["door"]
    assert door_clip["event_id"] == alerts["door"].json["event_id"]
    assert door_clip["frames"] == 151  # seq 50..200: 5 s before seq 100, 10 s after, at 10 fps
    assert door_clip["missing"] is None
    assert door_clip["duration_s"] == 15.0
    assert door_clip["clip_url"].startswith("https://nvr.example/clips/door/")
    for_receiver = [r for r in receiver.accepted if r.json.get("type") == "clip_ready"]
    assert {r.headers["X-Vspd-Delivery"] for r in for_receiver} == {"clip_ready"}
    assert alerts["door"].headers["X-Vspd-Delivery"] == "alert"

    # Every frame of the span, in order, checked against what the frames topic holds.
    state = tmp_path / "state"
    video = cv2.VideoCapture(str(state / door_clip["clip_file"]))
    shown = []
    while True:
        ok, image = video.read()
        if not ok:
            break
        shown.append(read_seq(image))
    video.release()
    distinct = [seq for index, seq in enumerate(shown) if index == 0 or shown[index - 1] != seq]
    assert distinct == [seq % 256 for seq in range(50, 201)]

    # Every other sink got its follow-up too, once, after its alert.
    wait_until(lambda: len(smtp.messages) == 4 and len(ntfy.accepted) == 4, 60, "follow-ups")
    mqtt_clips = [
        json.loads(payload) for topic, payload in mosquitto.messages if topic.endswith("/clip")
    ]
    assert sorted(c["event_id"] for c in mqtt_clips) == sorted(
        c["event_id"] for c in clips.values()
    )
    clip_mails = [m for m in smtp.messages if m["Subject"].startswith("[vspd] clip:")]
    assert len(clip_mails) == 2
    videos = [p for m in clip_mails for p in m.walk() if p.get_content_maintype() == "video"]
    assert len(videos) == 2
    attached = videos[0].get_payload(decode=True)
    assert attached.startswith(b"\x1aE\xdf\xa3") or attached[4:8] == b"ftyp"  # WebM or MP4
    pushed = [r for r in ntfy.accepted if r.headers.get("Filename", "").endswith((".webm", ".mp4"))]
    assert len(pushed) == 2  # the clip as the attachment
    assert {r.headers["X-Vspd-Event-Id"] for r in pushed} == {c["event_id"] for c in clips.values()}

    gate_clip = clips["gate"]
    assert gate_clip["frames"] == 121  # gate seq 0..120: what exists of the span
    assert "the first 3.0 s are not in Kafka" in gate_clip["missing"]

    # It plays in a real Chromium, served by the live page, for as long as its span.
    chromium = Chromium(tmp_path / "chromium")
    try:
        chromium.navigate(f"http://127.0.0.1:{port}/{door_clip['clip_file']}")
        chromium.wait_for(
            "document.querySelector('video') && document.querySelector('video').readyState >= 2",
            60,
            "the clip to play",
        )
        duration = chromium.evaluate("document.querySelector('video').duration")
        assert abs(duration - (door_clip["duration_s"] + 1 / FPS)) <= 2 / FPS, duration
    finally:
        chromium.close()

    # Reports link each clip; the gate's says what it lacks.
    assert daemon.stop() == 0
    connection = sqlite3.connect(store.database_path(state))
    try:
        rows = connection.execute("SELECT state, note FROM clips ORDER BY event_id").fetchall()
    finally:
        connection.close()
    assert [row[0] for row in rows] == ["done", "done"]


def test_a_clip_survives_kill9_between_its_alert_and_itself_and_comes_once(
    clips_config: Callable[..., tuple[Path, dict[str, str]]],
    daemons: Callable[..., DaemonProcess],
    bootstrap: str,
    receiver: WebhookReceiver,
    tmp_path: Path,
) -> None:
    config, topics = clips_config()
    session = str(uuid.uuid4())
    now = time.time_ns()
    # The alert's frame is now; the ten seconds after it are already written (capture
    # times ahead), so the clip is due in about twelve seconds.
    door = [frame("door", session, seq, now + (seq - 50) * SECOND // FPS) for seq in range(160)]
    positions = produce_frames(bootstrap, topics["frames_topic"], door)
    daemon = start_and_alert(
        daemons, config, bootstrap, topics, [(door[50], positions[("door", 50)])]
    )

    def alert_delivered() -> bool:
        connection = sqlite3.connect(store.database_path(tmp_path / "state"))
        try:
            row = connection.execute("SELECT state FROM deliveries WHERE kind = 'alert'").fetchone()
        finally:
            connection.close()
        return row is not None and row[0] == "delivered"

    wait_until(alert_delivered, 60, "the alert delivered")
    assert receiver.clips() == []  # its after-window has not passed
    daemon.kill9()
    again = daemons("--config", str(config), "alerts", name="alerts-again")
    wait_until(receiver.clips, 120, "the clip after the restart")
    assert again.stop() == 0
    (clip,) = receiver.clips()
    assert clip["frames"] == 151
    assert receiver.event_ids() == [clip["event_id"]]  # one alert, one clip


# -- the pieces alone -------------------------------------------------------------------
def clip_record(start_ns: int, end_ns: int) -> store.ClipRecord:
    return store.ClipRecord(
        1, "frames", 0, start_ns, end_ns, end_ns, "pending", 0,
        None, None, None, None, None, None, "", None,
    )  # fmt: skip


def test_what_a_clip_lacks_is_said() -> None:
    session = "s"
    frames = [frame("door", session, seq, seq * SECOND // FPS) for seq in range(100)]
    del frames[40:45]  # five frames lost before Kafka
    span = clip_record(0, 99 * SECOND // FPS)
    assert describe_missing(span, Collected(frames, False, False), SECOND // FPS) == (
        "5 frames lost before Kafka (seq gaps)"
    )
    late = clip_record(-3 * SECOND, 99 * SECOND // FPS)
    assert describe_missing(late, Collected(frames, True, True), SECOND // FPS).startswith(
        "the first 3.0 s are no longer in Kafka (retention)"
    )
    assert "left retention" in describe_missing(late, Collected([], True, True), SECOND // FPS)


def test_encoding_holds_each_frame_until_the_next_one(tmp_path: Path) -> None:
    codec = choose_codec(tmp_path)
    assert codec is not None
    # 10 fps with a 1 s hole: the frame before the hole stays on screen for it.
    times = [0, 1, 2, 3, 13, 14]
    frames = [frame("door", "s", seq, t * SECOND // FPS) for seq, t in enumerate(times)]
    path = tmp_path / f"clip{codec.suffix}"
    assert encode(frames, path, codec, SECOND // FPS) == 6
    video = cv2.VideoCapture(str(path))
    shown = []
    while True:
        ok, image = video.read()
        if not ok:
            break
        shown.append(read_seq(image))
    assert shown == [0, 1, 2, *[3] * 10, 4, 5, 5]


def test_a_forged_source_header_reads_every_partition_instead(
    bootstrap: str, fresh_topics: Callable[..., dict[str, str]]
) -> None:
    topics = fresh_topics(partitions=2)
    start = time.time_ns() - 60 * SECOND
    door = [frame("door", "s", seq, start + seq * SECOND // FPS) for seq in range(40)]
    produce_frames(bootstrap, topics["frames_topic"], door)
    forged = replace(
        clip_record(start + SECOND, start + 2 * SECOND),
        source_topic=topics["frames_topic"],
        source_partition=99,  # a partition the topic does not have
    )
    with TopicReader(KafkaConfig(bootstrap_servers=bootstrap), "test-clips") as reader:
        collected = collect(reader, topics["frames_topic"], forged, "door")
    assert [f.seq for f in collected.frames] == list(range(10, 21))
