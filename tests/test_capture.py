"""The capture daemon against a real broker and real sources."""

from __future__ import annotations

import json
import os
import re
import signal
import sys
import urllib.error
import urllib.request
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import cv2
import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from tests.support.kafka import Record, create_topics, read_topic, unique_name
from tests.support.metrics import samples
from tests.support.mjpeg import MjpegCamera
from tests.support.processes import DaemonProcess, wait_until
from tests.support.rtsp import RtspCamera
from tests.support.tansu import TansuBroker, free_port
from vspd import wire
from vspd.capture.errors import SourceUnavailableError
from vspd.capture.metrics import CaptureMetrics
from vspd.capture.reader import CameraReader
from vspd.capture.sender import FrameSender
from vspd.capture.sources.base import Captured
from vspd.capture.sources.mjpeg_http import MjpegHttpSource
from vspd.capture.sources.synthetic import (
    TRUTH_METADATA_KEY,
    SyntheticScene,
    boxes_from_metadata,
)
from vspd.config.model import CameraConfig, CaptureConfig, VspdConfig
from vspd.runtime.metrics import counted
from vspd.v1 import frame_pb2


def frames_by_camera(records: list[Record]) -> dict[str, list[tuple[Record, frame_pb2.Frame]]]:
    cameras: dict[str, list[tuple[Record, frame_pb2.Frame]]] = defaultdict(list)
    for record in sorted(records, key=lambda r: (r.partition, r.offset)):
        frame = wire.decode_frame(record.value)
        cameras[frame.camera_id].append((record, frame))
    return cameras


def stopped_status(daemon: DaemonProcess) -> dict[str, int]:
    """The counters of the daemon's last status line ("captured N, sent N, dropped N")."""
    match = re.findall(r"captured (\d+), sent (\d+), dropped (\d+)", daemon.log())
    assert match, daemon.log()[-2000:]
    captured, sent, dropped = match[-1]
    return {"captured": int(captured), "sent": int(sent), "dropped": int(dropped)}


def metric(port: int, name: str, **labels: str) -> float:
    """A sample's value (the sum over its other labels), read with Prometheus' own parser."""
    found = [v for have, v in samples(port, name) if labels.items() <= have.items()]
    assert found, f"{name}{labels} not in /metrics"
    return sum(found)


def http_status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 - loopback
            return int(response.status)
    except urllib.error.HTTPError as error:
        return error.code


def test_synthetic_cameras_arrive_complete_and_in_order(
    bootstrap: str,
    fresh_topics: Callable[..., dict[str, str]],
    write_config: Callable[..., Path],
    daemons: Callable[..., DaemonProcess],
) -> None:
    topics = fresh_topics(partitions=4)
    cameras = [
        {
            "id": f"cam-{i}",
            "source": f"synthetic:?objects=2&seed={i}",
            "fps": 25,
            "width": 320,
            "height": 240,
        }
        for i in range(3)
    ]
    config = write_config(topics=topics, cameras=cameras)
    started = [
        daemons("--config", str(config), "capture", "--camera", c["id"], name=c["id"])
        for c in cameras
    ]
    for daemon in started:
        daemon.wait_for_log('"event": "serving"')
    read_topic(bootstrap, topics["frames_topic"], lambda records: len(records) >= 90)
    for daemon in started:
        assert daemon.stop() == 0
    statuses = {c["id"]: stopped_status(d) for c, d in zip(cameras, started, strict=True)}

    by_camera = frames_by_camera(
        read_topic(
            bootstrap,
            topics["frames_topic"],
            lambda r: len(r) >= sum(s["sent"] for s in statuses.values()),
        )
    )
    assert set(by_camera) == {c["id"] for c in cameras}
    for camera_id, items in by_camera.items():
        status = statuses[camera_id]
        assert status["dropped"] == 0
        assert len(items) == status["captured"] == status["sent"]
        assert len({record.partition for record, _ in items}) == 1  # one camera, one partition
        assert {record.key for record, _ in items} == {camera_id.encode()}
        assert [frame.seq for _, frame in items] == list(range(len(items)))  # in order, no gaps
        assert len({frame.session_id for _, frame in items}) == 1
        times = [frame.capture_monotonic_ns for _, frame in items]
        assert times == sorted(times)
        first = items[0][1]
        assert (first.width, first.height, first.encoding) == (320, 240, frame_pb2.ENCODING_JPEG)
        image = cv2.imdecode(np.frombuffer(first.image, np.uint8), cv2.IMREAD_COLOR)
        assert image.shape == (240, 320, 3)
        assert len(boxes_from_metadata(first.metadata[TRUTH_METADATA_KEY])) == 2
    ids = [wire.frame_id(frame) for items in by_camera.values() for _, frame in items]
    assert len(ids) == len(set(ids))


@pytest.fixture
def video_file(tmp_path: Path) -> Path:
    """A real video file written by OpenCV: 12 frames whose first pixel row encodes the index."""
    path = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), 12, (160, 120))
    assert writer.isOpened()
    for index in range(12):
        image = np.full((120, 160, 3), index * 20, np.uint8)
        writer.write(image)
    writer.release()
    return path


def brightness(frame: frame_pb2.Frame) -> int:
    image = cv2.imdecode(np.frombuffer(frame.image, np.uint8), cv2.IMREAD_GRAYSCALE)
    return round(float(image.mean()) / 20)


def capture_video(
    bootstrap: str,
    topics: dict[str, str],
    write_config: Callable[..., Path],
    daemons: Callable[..., DaemonProcess],
    source: str,
    count: int,
) -> tuple[DaemonProcess, list[frame_pb2.Frame]]:
    """Run one capture of `source` until `count` frames are in Kafka; stop it; its frames, in order."""
    config = write_config(
        topics=topics,
        cameras=[{"id": "clip", "source": source, "fps": 50, "width": 160, "height": 120}],
        capture={"reconnect_initial_s": 0.1, "reconnect_max_s": 0.2},
    )
    daemon = daemons("--config", str(config), "capture", "--camera", "clip")
    records = read_topic(bootstrap, topics["frames_topic"], lambda r: len(r) >= count)
    assert daemon.stop() == 0
    return daemon, [frame for _, frame in frames_by_camera(records)["clip"]]


def test_synthetic_sensor_noise_is_small_centred_and_new_in_every_frame() -> None:
    """The noise a motion detector must ignore: within +-3 of the scene, about zero on
    average, and different from one frame to the next (not a fixed pattern)."""
    clean = SyntheticScene(320, 240, objects=3, seed=5, noise=False).render(1.0)[0]
    noisy = SyntheticScene(320, 240, objects=3, seed=5)
    first, second = noisy.render(1.0)[0], noisy.render(1.0)[0]
    assert first.shape == clean.shape
    assert first.dtype == np.uint8
    difference = first.astype(np.int16) - clean
    assert (difference.min(), difference.max()) == (-3, 3)
    assert abs(float(difference.mean())) < 0.1
    assert float((first != second).mean()) > 0.5


def test_video_file_is_read_in_order_and_reopened_at_its_end(
    bootstrap: str,
    fresh_topics: Callable[..., dict[str, str]],
    write_config: Callable[..., Path],
    daemons: Callable[..., DaemonProcess],
    video_file: Path,
) -> None:
    daemon, frames = capture_video(
        bootstrap, fresh_topics(partitions=2), write_config, daemons, f"file:{video_file}", 30
    )
    # Without loop the end of the file is an outage: reopened, seq continues.
    assert [brightness(f) for f in frames[:24]] == list(range(12)) * 2
    assert [f.seq for f in frames] == list(range(len(frames)))
    assert "end of" in daemon.log()
    assert '"state": "reconnecting"' in daemon.log()


def test_video_file_with_loop_plays_continuously(
    bootstrap: str,
    fresh_topics: Callable[..., dict[str, str]],
    write_config: Callable[..., Path],
    daemons: Callable[..., DaemonProcess],
    video_file: Path,
) -> None:
    daemon, frames = capture_video(
        bootstrap,
        fresh_topics(partitions=1),
        write_config,
        daemons,
        f"file:{video_file}?loop=true",
        30,
    )
    assert [brightness(f) for f in frames[:30]] == (list(range(12)) * 3)[:30]
    assert '"state": "reconnecting"' not in daemon.log()


@dataclass
class NetworkCamera:
    """A real MJPEG-over-HTTP camera on loopback, and the capture daemon reading it."""

    camera: MjpegCamera
    topics: dict[str, str]
    daemon: DaemonProcess
    metrics_port: int


@pytest.fixture
def network_camera(
    fresh_topics: Callable[..., dict[str, str]],
    write_config: Callable[..., Path],
    daemons: Callable[..., DaemonProcess],
) -> Iterator[Callable[..., NetworkCamera]]:
    cameras: list[MjpegCamera] = []

    def start(camera_id: str, corrupt_every: int = 0, **capture: float) -> NetworkCamera:
        camera = MjpegCamera(free_port(), fps=20)
        camera.corrupt_every = corrupt_every
        camera.start()
        cameras.append(camera)
        topics = fresh_topics(partitions=1)
        port = free_port()
        config = write_config(
            topics=topics,
            cameras=[
                {"id": camera_id, "source": camera.url, "fps": 20, "width": 320, "height": 240}
            ],
            capture={"reconnect_initial_s": 0.2, "reconnect_max_s": 0.5, **capture},
            metrics={"enabled": True, "capture_port": port},
        )
        daemon = daemons("--config", str(config), "capture", "--camera", camera_id)
        return NetworkCamera(camera, topics, daemon, port)

    yield start
    for camera in cameras:
        camera.stop()


def test_mjpeg_http_camera_is_passed_through_and_reconnected_after_an_outage(
    bootstrap: str, network_camera: Callable[..., NetworkCamera]
) -> None:
    net = network_camera("net")
    camera, topics, daemon = net.camera, net.topics, net.daemon
    try:
        read_topic(bootstrap, topics["frames_topic"], lambda r: len(r) >= 10)
        camera.stop()
        daemon.wait_for_log('"state": "reconnecting"')
        served_before = camera.frames_served
        camera.start()
        daemon.wait_for_log("source opened", timeout_s=60)
        wait_until(lambda: camera.frames_served > served_before + 10, 60, "frames after the outage")
        records = read_topic(bootstrap, topics["frames_topic"], lambda r: len(r) >= 25)
        # A camera that sends JPEG costs the Pi neither OpenCV nor NumPy (tens of MB).
        with open(f"/proc/{daemon.pid}/maps", encoding="utf-8") as maps:
            loaded = maps.read()
        assert "_multiarray_umath" not in loaded
        assert "cv2" not in loaded
    finally:
        camera.stop()
    assert daemon.stop() == 0
    frames = [frame for _, frame in frames_by_camera(records)["net"]]
    assert [f.seq for f in frames] == list(range(len(frames)))  # seq continues across the outage
    assert len({f.session_id for f in frames}) == 1
    # Pass-through: the bytes are the camera's own JPEG, not re-encoded (OpenCV's default quality 95).
    assert all(f.image[:2] == b"\xff\xd8" and (f.width, f.height) == (320, 240) for f in frames)
    assert daemon.log().count("source opened") >= 2


def test_unusable_camera_frames_are_dropped_and_counted_and_the_stream_goes_on(
    bootstrap: str, network_camera: Callable[..., NetworkCamera]
) -> None:
    # Every fifth part the camera sends is garbage.
    net = network_camera("glitchy", corrupt_every=5)
    camera, topics, daemon, port = net.camera, net.topics, net.daemon, net.metrics_port
    try:
        read_topic(bootstrap, topics["frames_topic"], lambda r: len(r) >= 1)  # metrics are up
        wait_until(
            lambda: metric(port, "vspd_capture_frames_dropped_total", reason="corrupt") >= 5,
            60,
            "unusable frames counted",
        )
        records = read_topic(bootstrap, topics["frames_topic"], lambda r: len(r) >= 20)
        assert metric(port, "vspd_capture_source_reconnects_total") == 0  # never reopened for it
    finally:
        camera.stop()
    assert daemon.stop() == 0
    frames = [frame for _, frame in frames_by_camera(records)["glitchy"]]
    assert all(f.image[:2] == b"\xff\xd8" for f in frames)  # only JPEGs reached Kafka
    assert [f.seq for f in frames] == list(range(len(frames)))  # dropped before numbering
    assert '"event": "unusable frame dropped"' in daemon.log()


def test_a_stalled_camera_is_reopened_and_a_read_that_hangs_stops_the_watchdog(
    bootstrap: str, network_camera: Callable[..., NetworkCamera]
) -> None:
    # Below the source's own read timeout (10 s): the stall is first taken for a hung read.
    net = network_camera("stally", stalled_after_s=2.0)
    camera, topics, daemon, port = net.camera, net.topics, net.daemon, net.metrics_port
    health = f"http://127.0.0.1:{port}/healthz"
    try:
        read_topic(bootstrap, topics["frames_topic"], lambda r: len(r) >= 10)
        assert http_status(health) == 200
        camera.stalled.set()  # the connection stays open, nothing comes
        daemon.wait_for_log("watchdog stopped so that systemd restarts capture")
        wait_until(lambda: http_status(health) == 503, 60, "/healthz to say stalled")
        # The source's read timeout then ends the read: reopened, frames again, alive again.
        daemon.wait_for_log('"state": "reconnecting"')
        camera.stalled.clear()
        wait_until(lambda: http_status(health) == 200, 60, "/healthz alive again")
        records = read_topic(bootstrap, topics["frames_topic"], lambda r: len(r) >= 30)
    finally:
        camera.stop()
    assert daemon.stop() == 0
    frames = [frame for _, frame in frames_by_camera(records)["stally"]]
    assert [f.seq for f in frames] == list(range(len(frames)))  # seq continues across it


@dataclass
class RtspCapture:
    """A real RTSP camera (GStreamer's RTSP server) on loopback, and the capture daemon reading it."""

    camera: RtspCamera
    topics: dict[str, str]
    daemon: DaemonProcess
    metrics_port: int

    def streaming_after(self, captured: float, more: int = 10) -> float:
        """Wait for `more` frames beyond `captured` (read from /metrics); the new count."""
        wait_until(
            lambda: (
                metric(self.metrics_port, "vspd_capture_frames_captured_total") >= captured + more
            ),
            90,
            f"{more} more frames from the RTSP camera",
        )
        return metric(self.metrics_port, "vspd_capture_frames_captured_total")

    def threads_and_files(self) -> tuple[int, int]:
        pid = self.daemon.pid
        return len(os.listdir(f"/proc/{pid}/task")), len(os.listdir(f"/proc/{pid}/fd"))


@pytest.fixture
def rtsp_capture(
    bootstrap: str,
    fresh_topics: Callable[..., dict[str, str]],
    write_config: Callable[..., Path],
    daemons: Callable[..., DaemonProcess],
) -> Iterator[RtspCapture]:
    camera = RtspCamera(free_port())
    camera.start()
    try:
        topics = fresh_topics(partitions=1)
        port = free_port()
        config = write_config(
            topics=topics,
            cameras=[{"id": "door", "source": camera.url, "fps": 15, "width": 320, "height": 240}],
            capture={"reconnect_initial_s": 0.2, "reconnect_max_s": 0.5},
            metrics={"enabled": True, "capture_port": port},
        )
        daemon = daemons("--config", str(config), "capture", "--camera", "door")
        read_topic(bootstrap, topics["frames_topic"], lambda r: len(r) >= 1)  # metrics are up
        yield RtspCapture(camera, topics, daemon, port)
    finally:
        camera.stop()


def test_rtsp_camera_that_goes_away_again_and_again_is_reopened_without_leaks(
    bootstrap: str, rtsp_capture: RtspCapture
) -> None:
    net, reopens = rtsp_capture, 6
    captured = net.streaming_after(0)
    net.camera.stop()
    net.daemon.wait_for_log('"state": "reconnecting"')
    net.camera.start()
    captured = net.streaming_after(captured)
    threads_before, files_before = net.threads_and_files()  # streaming, after one reopen
    for _ in range(reopens):
        reconnects = metric(net.metrics_port, "vspd_capture_source_reconnects_total")
        net.camera.stop()
        wait_until(
            lambda before=reconnects: (
                metric(  # type: ignore[misc]
                    net.metrics_port, "vspd_capture_source_reconnects_total"
                )
                > before
            ),
            60,
            "the capture to notice the camera went away",
        )
        net.camera.start()
        captured = net.streaming_after(captured)
    threads_after, files_after = net.threads_and_files()
    records = read_topic(bootstrap, net.topics["frames_topic"], lambda r: len(r) >= captured)
    assert net.daemon.stop() == 0
    # A thread or descriptor left behind by each reopen would add `reopens` of them.
    assert threads_after - threads_before < reopens, (threads_before, threads_after)
    assert files_after - files_before < reopens, (files_before, files_after)
    frames = [frame for _, frame in frames_by_camera(records)["door"]]
    assert [f.seq for f in frames] == list(range(len(frames)))  # seq continues across them all
    assert len({f.session_id for f in frames}) == 1
    assert all(f.image[:2] == b"\xff\xd8" and (f.width, f.height) == (320, 240) for f in frames)
    assert net.daemon.log().count("source opened") >= reopens + 2


def test_rtsp_camera_that_stalls_with_its_connection_open_does_not_hang_the_read(
    bootstrap: str, rtsp_capture: RtspCapture
) -> None:
    net = rtsp_capture
    captured = net.streaming_after(0)
    reconnects = metric(net.metrics_port, "vspd_capture_source_reconnects_total")
    net.camera.stall()  # SIGSTOP: the TCP connection stays open, no RTP packet comes
    # FFmpeg's read alone would wait for ever; the read timeout ends it and the source reopens.
    net.daemon.wait_for_log("stopped delivering frames", timeout_s=90)
    wait_until(
        lambda: metric(net.metrics_port, "vspd_capture_source_reconnects_total") > reconnects,
        60,
        "a reopen after the stall",
    )
    net.camera.resume()
    captured = net.streaming_after(captured)
    records = read_topic(bootstrap, net.topics["frames_topic"], lambda r: len(r) >= captured)
    assert net.daemon.stop() == 0
    frames = [frame for _, frame in frames_by_camera(records)["door"]]
    assert [f.seq for f in frames] == list(range(len(frames)))


@pytest.fixture
def private_broker(tmp_path: Path) -> Iterator[TansuBroker]:
    """A broker of this test's own, so that pausing it disturbs no other test."""
    broker = TansuBroker(free_port(), tmp_path / "private-tansu.log")
    broker.start()
    yield broker
    broker.stop()


def _paused_capture(
    broker: TansuBroker,
    write_config: Callable[..., Path],
    daemons: Callable[..., DaemonProcess],
    buffer_bytes: int,
    until: Callable[[int], bool],
) -> tuple[DaemonProcess, int, list[Record]]:
    topics = {
        "frames_topic": unique_name("frames"),
        "results_topic": unique_name("r"),
        "dead_letter_topic": unique_name("d"),
    }
    create_topics(broker.bootstrap, list(topics.values()), 1)
    port = free_port()
    config = write_config(
        topics=topics,
        kafka={"bootstrap_servers": broker.bootstrap},
        cameras=[
            {
                "id": "paused",
                "source": "synthetic:?objects=2",
                "fps": 20,
                "width": 320,
                "height": 240,
            }
        ],
        capture={"buffer_bytes": buffer_bytes},
        metrics={"enabled": True, "capture_port": port},
    )
    daemon = daemons("--config", str(config), "capture", "--camera", "paused")
    read_topic(broker.bootstrap, topics["frames_topic"], lambda r: len(r) >= 10)
    broker.pause()
    try:
        wait_until(lambda: until(port), 120, "frames to pile up while Kafka is paused")
    finally:
        broker.resume()
    captured_after_resume = int(metric(port, "vspd_capture_frames_captured_total"))
    wait_until(
        lambda: metric(port, "vspd_capture_frames_sent_total") >= captured_after_resume - 40,
        120,
        "the backlog to drain",
    )
    daemon.signal(signal.SIGTERM)
    assert daemon.wait(120) == 0
    status = stopped_status(daemon)
    records = read_topic(
        broker.bootstrap, topics["frames_topic"], lambda r: len(r) >= status["sent"]
    )
    return daemon, status["dropped"], records


def test_kafka_paused_nothing_lost_while_the_buffer_holds(
    private_broker: TansuBroker,
    write_config: Callable[..., Path],
    daemons: Callable[..., DaemonProcess],
) -> None:
    def piled_up(port: int) -> bool:
        return (
            metric(port, "vspd_capture_frames_captured_total")
            - metric(port, "vspd_capture_frames_sent_total")
            >= 40
        )

    daemon, dropped, records = _paused_capture(
        private_broker, write_config, daemons, 64 * 1024 * 1024, piled_up
    )
    status = stopped_status(daemon)
    seqs = [wire.decode_frame(r.value).seq for r in records]
    assert dropped == 0
    assert seqs == list(range(status["captured"]))


def test_kafka_paused_with_a_small_buffer_drops_exactly_what_it_counts(
    private_broker: TansuBroker,
    write_config: Callable[..., Path],
    daemons: Callable[..., DaemonProcess],
) -> None:
    def dropping(port: int) -> bool:
        return metric(port, "vspd_capture_frames_dropped_total", reason="buffer_full") >= 30

    daemon, dropped, records = _paused_capture(
        private_broker, write_config, daemons, 200_000, dropping
    )
    status = stopped_status(daemon)
    seqs = [wire.decode_frame(r.value).seq for r in records]
    assert seqs == sorted(seqs)
    assert len(seqs) == len(set(seqs))
    missing = status["captured"] - len(seqs)
    assert dropped >= 30
    assert missing == dropped  # every frame not in Kafka is counted, and nothing else
    assert daemon.log().count("Kafka buffer full: dropping oldest frames") >= 1


def test_picamera2_without_the_library_is_a_clear_error(
    write_config: Callable[..., Path], daemons: Callable[..., DaemonProcess]
) -> None:
    config = write_config(cameras=[{"id": "pi", "source": "picamera2:0"}])
    daemon = daemons("--config", str(config), "capture", "--camera", "pi")
    assert daemon.wait(60) == 1
    log = daemon.log()
    assert (
        "vspd capture: source picamera2: needs the picamera2 library, which exists only on Raspberry Pi OS"
        in log
    )
    assert "apt install python3-picamera2" in log
    assert "Traceback" not in log


STANDIN = Path(__file__).parent / "support" / "picamera2_standin"


@pytest.mark.parametrize(
    ("platform", "setting", "lores", "encoder", "stream"),
    [
        ("VC4", "auto", False, "MJPEGEncoder", "main"),  # Pi 0-4: the hardware JPEG block
        ("PISP", "auto", False, "JpegEncoder", "main"),  # Pi 5: simplejpeg
        ("PISP", "auto", True, "JpegEncoder", "lores"),  # the full sensor view, scaled by the ISP
        ("VC4", "jpeg", True, "JpegEncoder", "lores"),  # the config's word wins
    ],
)
def test_picamera2_encoder_and_stream_chosen_per_board(
    bootstrap: str,
    fresh_topics: Callable[..., dict[str, str]],
    write_config: Callable[..., Path],
    daemons: Callable[..., DaemonProcess],
    tmp_path: Path,
    platform: str,
    setting: str,
    lores: bool,
    encoder: str,
    stream: str,
) -> None:
    """Against a stand-in for picamera2 (no Pi camera here): tests/support/picamera2_standin."""
    topics = fresh_topics(partitions=1)
    camera = {
        "id": "pi", "source": "picamera2:0", "fps": 10, "width": 640, "height": 360,
        "jpeg_quality": 70, "picamera_encoder": setting, "picamera_lores": lores,
    }  # fmt: skip
    config = write_config(topics=topics, cameras=[camera])
    record = tmp_path / "picamera2.json"
    daemon = daemons(
        "--config", str(config), "capture", "--camera", "pi",
        env={"PYTHONPATH": str(STANDIN), "STANDIN_PLATFORM": platform,
             "STANDIN_RECORD": str(record)},
    )  # fmt: skip
    records = read_topic(bootstrap, topics["frames_topic"], lambda r: len(r) >= 5)
    assert daemon.stop() == 0
    used = json.loads(record.read_text())
    assert (used["encoder"], used["stream"]) == (encoder, stream)
    if encoder == "JpegEncoder":
        assert used["quality"] == 70
    if stream == "lores":  # main at the sensor's full size, lores at what is sent
        assert used["config"]["main"]["size"] == [2304, 1296]
        assert used["config"]["lores"] == {"size": [640, 360], "format": "YUV420"}
    else:
        assert used["config"]["main"]["size"] == [640, 360]
    frames = [frame for _, frame in frames_by_camera(records)["pi"]]
    assert all((f.width, f.height) == (640, 360) and f.image[:2] == b"\xff\xd8" for f in frames)
    assert f'"encoder": "{encoder}"' in daemon.log()


def test_unknown_camera_id_is_a_clear_error(
    write_config: Callable[..., Path], daemons: Callable[..., DaemonProcess]
) -> None:
    config = write_config(cameras=[{"id": "front", "source": "synthetic:"}])
    daemon = daemons("--config", str(config), "capture", "--camera", "back")
    assert daemon.wait(60) == 1
    assert "vspd capture: no camera 'back' in [[cameras]] (configured: front)" in daemon.log()


def test_http_camera_login_is_basic_auth_and_never_shown() -> None:
    camera = MjpegCamera(free_port(), fps=50, login=("admin", "pa:ss@word"))
    camera.start()
    try:
        base = f"127.0.0.1:{camera.port}/stream.mjpg"
        in_url = CameraConfig(id="door", source=f"http://admin:pa%3Ass%40word@{base}")
        in_keys = CameraConfig(
            id="door", source=f"http://{base}", username="admin", password="pa:ss@word"
        )
        for config in (in_url, in_keys):
            source = MjpegHttpSource(config)
            source.open()
            assert source.read().jpeg is not None
            source.close()
        wrong = MjpegHttpSource(CameraConfig(id="door", source=f"http://admin:guess@{base}"))
        with pytest.raises(SourceUnavailableError) as refused:
            wrong.open()
        assert "HTTP 401" in str(refused.value)
        assert "guess" not in str(refused.value)
        assert "admin" not in str(refused.value)
        assert camera.refused == 1
    finally:
        camera.stop()


def test_a_camera_that_cannot_open_says_why_once_and_never_its_password(
    write_config: Callable[..., Path], daemons: Callable[..., DaemonProcess]
) -> None:
    closed = free_port()  # nothing listens there
    config = write_config(
        cameras=[
            {
                "id": "gate",
                "source": f"rtsp://127.0.0.1:{closed}/stream1",
                "username": "admin",
                "password": "hunter2",
            }
        ]
    )
    daemon = daemons("--config", str(config), "capture", "--camera", "gate")
    daemon.wait_for_log("connection refused by 127.0.0.1")
    daemon.wait_for_log('"state": "reconnecting"')
    log = daemon.log()
    assert "hunter2" not in log
    assert "admin" not in log
    # FFmpeg's and OpenCV's own lines ("[tcp @ 0x...] Connection to tcp://...") are silenced.
    assert "[tcp @" not in log
    assert "WARN:" not in log
    assert daemon.stop() == 0


@pytest.mark.parametrize(
    ("kind", "target", "reason"),
    [
        (
            "v4l2",
            "/dev/video-absent",
            "no such device /dev/video-absent (is the camera plugged in?",
        ),
        ("v4l2", "/dev/null", "/dev/null is busy or not a capture device"),
        ("rtsp", "rtsp://camera.invalid/x", "the host name 'camera.invalid' cannot be resolved"),
    ],
)
def test_why_a_source_did_not_open_is_named(kind: str, target: str, reason: str) -> None:
    from vspd.capture.sources.opencv import why_not_opened

    assert why_not_opened(kind, target).startswith(reason)


class V4l2DeviceStandIn:
    """A stand-in for cv2.VideoCapture on a V4L2 camera (no /dev/video device exists here).

    Like OpenCV's V4L2 backend with CAP_PROP_CONVERT_RGB off, read() hands out the camera's
    MJPEG buffer as one row of bytes; `converts` False is a backend that refuses to stop
    converting (it then hands out decoded pixels).
    """

    jpeg = b""
    converts = True
    opened: ClassVar[list[V4l2DeviceStandIn]] = []

    def __init__(self, device: str | int, backend: int) -> None:
        self.device, self.backend = device, backend
        self.settings: dict[int, float] = {}
        V4l2DeviceStandIn.opened.append(self)

    def isOpened(self) -> bool:  # noqa: N802 - OpenCV's name
        return True

    def set(self, prop: int, value: float) -> bool:
        if prop == cv2.CAP_PROP_CONVERT_RGB and not self.converts:
            return False
        self.settings[prop] = value
        return True

    def read(self) -> tuple[bool, np.ndarray]:
        if self.settings.get(cv2.CAP_PROP_CONVERT_RGB) == 0:
            return True, np.frombuffer(self.jpeg, np.uint8).reshape(1, -1)
        return True, cv2.imdecode(np.frombuffer(self.jpeg, np.uint8), cv2.IMREAD_COLOR)

    def release(self) -> None:
        pass


@pytest.mark.parametrize("converts", [True, False])
def test_v4l2_camera_is_asked_for_mjpeg_and_its_jpeg_passed_through(
    monkeypatch: pytest.MonkeyPatch, converts: bool
) -> None:
    from vspd.capture.sources import opencv

    ok, encoded = cv2.imencode(".jpg", np.full((48, 64, 3), 90, np.uint8))
    assert ok
    monkeypatch.setattr(V4l2DeviceStandIn, "jpeg", encoded.tobytes())
    monkeypatch.setattr(V4l2DeviceStandIn, "converts", converts)
    monkeypatch.setattr(V4l2DeviceStandIn, "opened", [])
    monkeypatch.setattr(opencv.cv2, "VideoCapture", V4l2DeviceStandIn)
    camera = CameraConfig(id="usb", source="v4l2:/dev/video2", width=64, height=48, fps=25)
    source = opencv.OpenCvSource(camera)
    source.open()
    captured = source.read()
    source.close()
    (device,) = V4l2DeviceStandIn.opened
    assert (device.device, device.backend) == ("/dev/video2", cv2.CAP_V4L2)
    assert device.settings[cv2.CAP_PROP_FOURCC] == cv2.VideoWriter.fourcc(*"MJPG")
    assert (
        device.settings[cv2.CAP_PROP_FRAME_WIDTH],
        device.settings[cv2.CAP_PROP_FRAME_HEIGHT],
    ) == (64, 48)
    assert device.settings[cv2.CAP_PROP_FPS] == 25
    if converts:
        assert captured.jpeg == V4l2DeviceStandIn.jpeg  # the camera's bytes, not re-encoded
        assert captured.image is None
    else:
        assert captured.jpeg is None  # pixels: the encoder makes the JPEG
        assert captured.image is not None
        assert (captured.width, captured.height) == (64, 48)


class RawFullHdStandIn:
    """A stand-in for a camera that delivers raw 1920x1080 BGR frames (6 MB each), paced by
    the reader: the queue to the encoder fills, since nothing takes from it here."""

    paced_by_reader = True

    def __init__(self) -> None:
        self.image = np.zeros((1080, 1920, 3), np.uint8)

    def open(self) -> None:
        pass

    def read(self) -> Captured:
        return Captured.now(image=self.image, width=1920, height=1080)

    def close(self) -> None:
        pass


def test_the_queue_to_the_encoder_is_bounded_in_bytes_and_always_takes_one_frame() -> None:
    camera = CameraConfig(id="big", source="synthetic:", fps=120, width=1920, height=1080)
    metrics = CaptureMetrics(CollectorRegistry())
    settings = CaptureConfig(queue_frames=8, queue_bytes=16 * 2**20)
    reader = CameraReader(camera, settings, RawFullHdStandIn(), metrics)
    reader.start()
    try:
        wait_until(lambda: counted(metrics.dropped) >= 20, 60, "frames dropped at the bound")
        # 16 MiB holds two 6.2 MB frames: the third would pass the bound (8 frames would not).
        assert reader.frames.qsize() == 2
        first = reader.take()
        assert first.seq == 0
        wait_until(lambda: reader.frames.qsize() == 2, 60, "a frame queued in the room taken")
    finally:
        reader.stop()
    # A bound below one frame still lets one through at a time: the camera never starves.
    tiny = CameraReader(
        camera,
        CaptureConfig(queue_bytes=1024),
        RawFullHdStandIn(),
        CaptureMetrics(CollectorRegistry()),
    )
    tiny.start()
    try:
        wait_until(lambda: counted(tiny.metrics.dropped) >= 5, 60, "frames dropped at the bound")
        assert tiny.frames.qsize() == 1
    finally:
        tiny.stop()
    assert counted(metrics.dropped, reason="queue_full") == counted(metrics.dropped)


def test_a_frame_handed_to_librdkafka_is_not_kept_a_second_time() -> None:
    """librdkafka copies what it is given and holds it until Kafka acknowledges it: while
    Kafka is away the sender must not keep its own copy of those frames too (the window, a
    quarter of buffer_bytes, would be held twice)."""
    # Nothing listens there: every frame handed over stays unacknowledged.
    config = VspdConfig.model_validate(
        {"kafka": {"bootstrap_servers": f"127.0.0.1:{free_port()}"}, "metrics": {"enabled": False}}
    )
    sender = FrameSender(config, "away", CaptureMetrics(CollectorRegistry()))
    try:
        frames = [os.urandom(100_000) for _ in range(5)]
        held_before = [sys.getrefcount(frame) for frame in frames]
        for seq in range(len(frames)):
            sender.add(seq, frames[seq], 0)
        sender.pump()
        assert sender.unacked_bytes == 500_000  # all handed over, none acknowledged
        assert not sender.buffer
        assert [sys.getrefcount(frame) for frame in frames] == held_before
    finally:
        sender.producer.purge()
        sender.producer.flush(5)
