"""`vspd replay`: a period of retained frames through another processor, into another results
topic (real Kafka, a real processor process, the replay as the user runs it)."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.support.frames import produce_frames, tiny_jpeg
from tests.support.kafka import create_topics, read_to_end, unique_name
from tests.support.processes import DaemonProcess, wait_until
from tests.support.results import SECOND
from tests.support.tansu import free_port
from vspd import wire
from vspd.alerts import store
from vspd.v1 import frame_pb2

FPS = 2
WINDOW_S = 120
CAMERAS = ("door", "yard")


def iso(time_ns: int) -> str:
    return datetime.fromtimestamp(time_ns // SECOND, UTC).isoformat()


@pytest.fixture
def recorded(
    bootstrap: str,
    fresh_topics: Callable[..., dict[str, str]],
    write_config: Callable[..., Path],
    daemons: Callable[..., DaemonProcess],
) -> dict[str, object]:
    """Frames of two cameras around a two-minute window, and a processor to replay them with."""
    topics = fresh_topics(partitions=2)
    port = free_port()
    config = write_config(
        topics=topics,
        # The live broker's processor is elsewhere: the replay names its own.
        broker={
            "processor_addresses": [f"127.0.0.1:{free_port()}"],
            "max_in_flight": 2,
            "retry_initial_s": 0.05,
        },
        processor={"listen": f"127.0.0.1:{port}", "plugin": "tests.plugins.sample:jitter"},
    )
    processor = daemons("--config", str(config), "processor", name="processor")
    processor.wait_for_log('"event": "serving"')
    # Whole seconds: the period's ends, given as ISO times, are exactly frames' capture times.
    start = (time.time_ns() // SECOND - 10 * 60) * SECOND
    session = str(uuid.uuid4())
    # 30 s before the window, the window, 30 s after it; stamped as capture stamps them.
    frames = [
        frame_pb2.Frame(
            camera_id=camera, session_id=session, seq=seq,
            capture_time_unix_ns=start + seq * SECOND // FPS, width=64, height=48,
            encoding=frame_pb2.ENCODING_JPEG, image=tiny_jpeg(),
        )
        for seq in range((WINDOW_S + 60) * FPS)
        for camera in CAMERAS
    ]  # fmt: skip
    produce_frames(bootstrap, topics["frames_topic"], frames)
    since = start + 30 * SECOND
    return {
        "config": config,
        "topics": topics,
        "processor": f"127.0.0.1:{port}",
        "since": since,
        "until": since + WINDOW_S * SECOND,
    }


def replay_command(recorded: dict[str, object], results_topic: str) -> list[str]:
    return [
        sys.executable, "-m", "vspd", "--config", str(recorded["config"]), "replay",
        "--since", iso(int(recorded["since"])),  # type: ignore[call-overload]
        "--until", iso(int(recorded["until"])),  # type: ignore[call-overload]
        "--results-topic", results_topic,
        "--processor-address", str(recorded["processor"]),
    ]  # fmt: skip


def run_replay(
    recorded: dict[str, object], results_topic: str, command: list[str] | None = None
) -> subprocess.CompletedProcess[str]:
    """The replay as the user runs it, to its end."""
    return subprocess.run(
        command or replay_command(recorded, results_topic),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def window_results(bootstrap: str, topic: str) -> dict[str, list[int]]:
    by_camera: dict[str, list[int]] = {}
    for record in read_to_end(bootstrap, topic):
        frame = wire.decode_result(record.value).frame
        by_camera.setdefault(frame.camera_id, []).append(frame.seq)
    return by_camera


EXPECTED = {camera: list(range(30 * FPS, (30 + WINDOW_S) * FPS)) for camera in CAMERAS}


def test_replay_writes_one_result_per_frame_of_the_period_in_order(
    recorded: dict[str, object],
    bootstrap: str,
    write_config: Callable[..., Path],
    daemons: Callable[..., DaemonProcess],
    tmp_path: Path,
) -> None:
    new_results = unique_name("results-replay")
    create_topics(bootstrap, [new_results], 2)
    done = run_replay(recorded, new_results)
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]
    frames = len(CAMERAS) * WINDOW_S * FPS
    assert f"done: {frames} frames of the period read; {frames} results written" in done.stdout
    assert window_results(bootstrap, new_results) == EXPECTED  # each once, in capture order

    # What the new model would have alerted: an alerts daemon of its own on the new topic.
    topics = dict(recorded["topics"])  # type: ignore[call-overload]
    topics["results_topic"] = new_results
    compare = write_config(
        "compare.toml",
        topics=topics,
        alerts={
            "group_id": unique_name("compare"),
            "state_dir": str(tmp_path / "compare"),
            "reports_dir": str(tmp_path / "compare-reports"),
            "rules": [{"name": "things", "labels": ["thing"], "min_frames": 1, "cooldown_s": 3600}],
            "sinks": [{"type": "log", "name": "journal"}],
        },
    )
    alerts = daemons("--config", str(compare), "alerts", name="compare")
    wait_until(
        lambda: store.event_count(store.database_path(tmp_path / "compare")) == 2, 60, "alerts"
    )
    assert alerts.stop() == 0
    # Ten minutes old: stored and reported, nobody woken (max_alert_age_s).
    assert alerts.log().count('"alert raised, not sent: too old"') == 2


def test_an_interrupted_replay_run_again_completes_without_duplicates(
    recorded: dict[str, object], bootstrap: str, tmp_path: Path
) -> None:
    new_results = unique_name("results-replay")
    create_topics(bootstrap, [new_results], 2)
    log = tmp_path / "replay.log"
    with log.open("w") as output:
        first = subprocess.Popen(
            replay_command(recorded, new_results), stdout=output, stderr=subprocess.STDOUT
        )
        # Interrupted once some results are out (Ctrl-C: what is in flight is finished).
        deadline = time.monotonic() + 120
        while len(read_to_end(bootstrap, new_results)) < 40 and first.poll() is None:
            assert time.monotonic() < deadline, log.read_text()[-3000:]
        first.send_signal(signal.SIGINT)
        assert first.wait(60) == 130, log.read_text()[-3000:]
    assert "run the same command again to finish" in log.read_text()
    partial = window_results(bootstrap, new_results)
    assert 0 < sum(map(len, partial.values())) < len(CAMERAS) * WINDOW_S * FPS

    again = run_replay(recorded, new_results)
    assert again.returncode == 0, again.stdout + again.stderr[-3000:]
    assert window_results(bootstrap, new_results) == EXPECTED  # nothing twice, nothing lost


def test_replay_refuses_the_live_results_topic_and_the_future(
    recorded: dict[str, object],
) -> None:
    topics = recorded["topics"]
    live = run_replay(recorded, topics["results_topic"])  # type: ignore[index]
    assert live.returncode == 1
    assert live.stderr.strip().count("\n") == 0  # one line, no traceback
    assert "is the live results topic" in live.stderr
    future = replay_command(recorded, "elsewhere")
    future[future.index("--until") + 1] = iso(time.time_ns() + 3600 * SECOND)
    ahead = run_replay(recorded, "elsewhere", future)
    assert ahead.returncode == 1
    assert "--until is in the future" in ahead.stderr
