"""Chaos: the whole pipeline as separate processes while a controller breaks things at random.

8 synthetic cameras, a processor, two brokers in one group and the alerts daemon
(webhook sink to a receiver here) on a private Tansu broker. Faults, in a seeded
random order and at random moments: kill -9 and restart of every kind of daemon,
Kafka paused (SIGSTOP), the processor stopped for a while, poison messages, and
a webhook receiver answering 500 and then too slowly. Afterwards the invariants
are checked from the topics, the SQLite store and the receiver, and a summary
table is printed. About two minutes by default; `--chaos-seconds 1800` for long.
"""

from __future__ import annotations

import json
import random
import sqlite3
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.chaos.watchdog import PingMonitor
from tests.support.kafka import create_topics, produce, read_to_end, unique_name
from tests.support.peers import WebhookReceiver
from tests.support.processes import DaemonProcess, wait_until
from tests.support.tansu import TansuBroker, free_port
from vspd import wire
from vspd.alerts import store
from vspd.alerts.rules import RuleState, build_rules
from vspd.config.model import RuleConfig
from vspd.config.toml_writer import render_toml
from vspd.v1 import result_pb2

pytestmark = pytest.mark.chaos

CAMERAS = [f"chaos-{i}" for i in range(8)]
SERVICES = ["processor", "broker-1", "broker-2", "alerts"]
PARTITIONS = 8
WINDOW_PER_PARTITION = 8
SECRET = b"chaos-secret"
RSS_LIMIT_MIB = 1024  # far above a healthy daemon: only unbounded growth crosses it
WATCHDOG_GAP_LIMIT_S = 20.0  # pings come every second; a hung loop stays silent for good
RULE = {
    "name": "moving",
    "labels": ["motion"],
    "min_confidence": 0.2,
    "min_frames": 3,
    "window_s": 3.0,
    "cooldown_s": 8.0,
}
# Every kind of fault at least this often, whatever the duration.
BASE_SCHEDULE = (
    ["kill-capture"] * 3
    + ["kill-broker"] * 2
    + ["kill-processor"] * 2
    + ["kill-alerts"] * 2
    + ["pause-kafka"] * 2
    + ["stop-processor"]
    + ["poison"] * 2
    + ["webhook-trouble"] * 2
)


@dataclass
class Chaos:
    directory: Path
    kafka: TansuBroker
    receiver: WebhookReceiver
    monitor: PingMonitor
    config: Path
    topics: dict[str, str]
    metrics_ports: dict[str, int]
    processes: dict[str, DaemonProcess] = field(default_factory=dict)
    peak_rss_mib: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    faults: Counter[str] = field(default_factory=Counter)
    poison: list[bytes] = field(default_factory=list)
    broker_kills: int = 0
    # Where each daemon's log stood when it was last started (the file holds every start's).
    log_starts: dict[str, int] = field(default_factory=dict)

    def args(self, name: str) -> list[str]:
        base = ["--config", str(self.config)]
        if name.startswith("chaos-"):
            return [*base, "capture", "--camera", name]
        return [*base, name.split("-", maxsplit=1)[0]]

    def start(self, name: str) -> None:
        key = "CAPTURE" if name.startswith("chaos-") else name.split("-", maxsplit=1)[0].upper()
        offset = CAMERAS.index(name) if name.startswith("chaos-") else 0
        env = {
            "NOTIFY_SOCKET": self.monitor.socket_for(name),
            "WATCHDOG_USEC": "2000000",
            f"VSPD_METRICS__{key}_PORT": str(self.metrics_ports[name] - offset),
        }
        log = self.directory / f"{name}.log"
        self.log_starts[name] = len(log.read_text(errors="replace")) if log.exists() else 0
        self.processes[name] = DaemonProcess(self.args(name), log, env).start()
        self.monitor.begin(name)

    def wait_serving(self, name: str) -> None:
        """Until the daemon started last under this name serves.

        A SIGTERM during a daemon's first second (Python still importing, before its
        handler is installed) ends it by the signal: a stop right after a restart
        would see that, not how the daemon drains.
        """
        process, since = self.processes[name], self.log_starts[name]
        wait_until(
            lambda: '"event": "serving"' in process.log()[since:], 120, f"{name} to serve again"
        )

    def kill9(self, name: str) -> None:
        self.monitor.end(name)
        process = self.processes.get(name)
        if process is not None and process.process is not None and process.process.poll() is None:
            process.kill9()

    def stop(self, name: str) -> int | None:
        self.monitor.end(name)
        process = self.processes.get(name)
        return process.stop(120) if process is not None else None

    def lost_partition_events(self) -> int:
        """Partitions a live broker lost without a revocation, from the brokers' logs."""
        lost = 0
        for name in ("broker-1", "broker-2"):
            process = self.processes.get(name)
            for line in process.log().splitlines() if process is not None else ():
                if '"event": "partitions lost"' in line:
                    lost += len(_partitions_of(line))
        return lost

    def sample_rss(self) -> None:
        for name, process in list(self.processes.items()):
            if process.process is None or process.process.poll() is not None:
                continue
            try:
                status = Path(f"/proc/{process.pid}/status").read_text()
            except OSError:
                continue
            for line in status.splitlines():
                if line.startswith("VmRSS:"):
                    self.peak_rss_mib[name] = max(
                        self.peak_rss_mib[name], int(line.split()[1]) / 1024
                    )


@pytest.fixture
def chaos(tmp_path: Path) -> Iterator[Chaos]:
    kafka = TansuBroker(free_port(), tmp_path / "tansu.log")
    kafka.start()
    # A production receiver de-duplicates by X-Vspd-Event-Id: a timeout after it
    # accepted is ambiguous to any sender, and the retry must not reach people twice.
    receiver = WebhookReceiver(SECRET, idempotent=True)
    monitor = PingMonitor(tmp_path)
    topics = {
        "frames_topic": unique_name("chaos-frames"),
        "results_topic": unique_name("chaos-results"),
        "dead_letter_topic": unique_name("chaos-dead"),
    }
    create_topics(kafka.bootstrap, list(topics.values()), PARTITIONS)
    secret = tmp_path / "secret"
    secret.write_bytes(SECRET)
    processor_port = free_port()
    config = {
        "kafka": {"bootstrap_servers": kafka.bootstrap, "session_timeout_ms": 6000, **topics},
        "cameras": [
            {
                "id": camera,
                "source": f"synthetic:?objects=2&speed=0.4&seed={i}",
                "fps": 4.0,
                "width": 320,
                "height": 240,
            }
            for i, camera in enumerate(CAMERAS)
        ],
        "capture": {"reconnect_initial_s": 0.2, "reconnect_max_s": 2.0},
        "broker": {
            "processor_addresses": [f"127.0.0.1:{processor_port}"],
            "group_id": unique_name("chaos"),
            "max_in_flight": 16,
            "max_in_flight_per_partition": WINDOW_PER_PARTITION,
            "call_timeout_s": 5.0,
            "retry_initial_s": 0.1,
            "retry_max_s": 1.0,
            "include_image": False,
        },
        "processor": {
            "listen": f"127.0.0.1:{processor_port}",
            "builtin": "motion",
            "workers": 2,
            "grace_period_s": 2.0,
        },
        "alerts": {
            "state_dir": str(tmp_path / "state"),
            "reports_dir": str(tmp_path / "reports"),
            "group_id": unique_name("chaos-alerts"),
            "retry_initial_s": 0.2,
            "retry_max_s": 2.0,
            "rules": [RULE],
            "sinks": [
                {
                    "type": "webhook",
                    "name": "hook",
                    "url": receiver.url,
                    "secret": f"file:{secret}",
                    "timeout_s": 1.0,
                }
            ],
        },
        "metrics": {"enabled": True},
        "logging": {"format": "json"},
    }
    path = tmp_path / "vspd.toml"
    path.write_text(render_toml(config))
    ports = {name: free_port() for name in [*SERVICES, *CAMERAS]}
    state = Chaos(tmp_path, kafka, receiver, monitor, path, topics, ports)
    for name in [*SERVICES, *CAMERAS]:
        monitor.socket_for(name)
    monitor.start()
    yield state
    for name in list(state.processes):
        state.kill9(name)
    monitor.stop()
    receiver.close()
    kafka.stop()


def test_chaos(chaos: Chaos, request: pytest.FixtureRequest) -> None:
    seconds = float(request.config.getoption("--chaos-seconds"))
    seed = request.config.getoption("--chaos-seed")
    seed = seed if seed is not None else random.randrange(1_000_000)
    rng = random.Random(seed)
    print(f"\nchaos: seed {seed}, {seconds:.0f} s of faults (rerun: --chaos-seed {seed})")

    for name in [*SERVICES, *CAMERAS]:
        chaos.start(name)
    for name in SERVICES:
        chaos.processes[name].wait_for_log('"event": "serving"', timeout_s=120)
    sampling = threading.Event()
    sampler = threading.Thread(target=_sample, args=(chaos, sampling), daemon=True)
    sampler.start()
    try:
        run_faults(chaos, rng, seconds)
        drain(chaos)
    finally:
        sampling.set()
        sampler.join(5)
    failures = check(chaos)
    assert not failures, "\n".join(failures)


def _sample(chaos: Chaos, stop: threading.Event) -> None:
    while not stop.wait(0.5):
        chaos.sample_rss()


def run_faults(chaos: Chaos, rng: random.Random, seconds: float) -> None:
    schedule = list(BASE_SCHEDULE)
    rng.shuffle(schedule)
    deadline = time.monotonic() + seconds
    # Random moments: the gaps between faults are drawn, not awaited events.
    # Faults take time themselves, so the gaps are short; every kind in the
    # base schedule is injected even if that runs past the deadline.
    gap = seconds / (2 * len(schedule) + 1)
    while schedule or time.monotonic() < deadline:
        time.sleep(rng.uniform(0.3, 1.7) * gap)
        kind = schedule.pop() if schedule else rng.choice(BASE_SCHEDULE)
        inject(chaos, rng, kind)
        chaos.faults[kind] += 1


def inject(chaos: Chaos, rng: random.Random, kind: str) -> None:
    if kind.startswith("kill-"):
        target = {
            "kill-capture": rng.choice(CAMERAS),
            "kill-broker": rng.choice(["broker-1", "broker-2"]),
            "kill-processor": "processor",
            "kill-alerts": "alerts",
        }[kind]
        chaos.kill9(target)
        chaos.broker_kills += kind == "kill-broker"
        time.sleep(rng.uniform(0.2, 2.0))
        chaos.start(target)
    elif kind == "pause-kafka":
        chaos.kafka.pause()
        time.sleep(rng.uniform(2.0, 5.0))
        chaos.kafka.resume()
    elif kind == "stop-processor":
        chaos.stop("processor")
        time.sleep(rng.uniform(3.0, 8.0))
        chaos.start("processor")
    elif kind == "poison":
        values = [b"\x00chaos-poison-" + rng.randbytes(16) for _ in range(rng.randint(1, 3))]
        produce(
            chaos.kafka.bootstrap,
            chaos.topics["frames_topic"],
            [(rng.choice(CAMERAS).encode(), v) for v in values],
        )
        chaos.poison.extend(values)
    elif kind == "webhook-trouble":
        chaos.receiver.mode = "fail"
        time.sleep(rng.uniform(2.0, 5.0))
        chaos.receiver.mode = "slow"
        time.sleep(rng.uniform(2.0, 4.0))
        chaos.receiver.mode = "ok"


def drain(chaos: Chaos) -> None:
    """Cameras stop; everything that reached Kafka must then come through."""
    chaos.receiver.mode = "ok"
    for name in [*CAMERAS, *SERVICES]:
        chaos.wait_serving(name)
    for camera in CAMERAS:
        assert chaos.stop(camera) == 0, chaos.processes[camera].log()[-2000:]
    kafka = chaos.kafka.bootstrap

    def all_processed() -> bool:
        frames = {wire.frame_id(f) for f in _frames(kafka, chaos.topics["frames_topic"])}
        results = {wire.frame_id(r.frame) for r in _results(kafka, chaos.topics["results_topic"])}
        return frames <= results

    wait_until(all_processed, 300, "every frame's result after the faults")
    database = store.database_path(chaos.directory / "state")

    def alerts_caught_up() -> bool:
        last = defaultdict(int)
        for result in _results(kafka, chaos.topics["results_topic"]):
            key = (result.frame.camera_id, result.frame.session_id)
            last[key] = max(last[key], result.frame.seq)
        connection = sqlite3.connect(database)
        try:
            seen = {
                (r[0], r[1]): r[2]
                for r in connection.execute("SELECT camera, session, last_seq FROM seen")
            }
            pending = connection.execute(
                "SELECT COUNT(*) FROM deliveries WHERE state = 'pending'"
            ).fetchone()[0]
        finally:
            connection.close()
        return all(seen.get(key, -1) >= seq for key, seq in last.items()) and pending == 0

    wait_until(alerts_caught_up, 300, "the alerts daemon to read and deliver everything")
    for name in SERVICES:
        code = chaos.stop(name)
        assert code == 0, f"{name} exited {code}:\n{chaos.processes[name].log()[-2000:]}"


def _frames(bootstrap: str, topic: str) -> list[wire.Frame]:
    frames = []
    for record in read_to_end(bootstrap, topic):
        try:
            frames.append(wire.decode_frame(record.value))
        except wire.BadMessageError:
            continue
    return frames


def _results(bootstrap: str, topic: str) -> list[result_pb2.Result]:
    return [wire.decode_result(record.value) for record in read_to_end(bootstrap, topic)]


def expected_alerts(results: list[result_pb2.Result]) -> set[str]:
    """What the rule calls for: the same rule run over each camera's results, first occurrences, in order."""
    (rule,) = build_rules([RuleConfig(**RULE)])
    states: dict[str, RuleState] = defaultdict(RuleState)
    seen: set[wire.FrameId] = set()
    expected = set()
    last_seq: dict[tuple[str, str], int] = {}
    for result in results:
        frame = result.frame
        identity = wire.frame_id(frame)
        if identity in seen or last_seq.get((frame.camera_id, frame.session_id), -1) >= frame.seq:
            continue
        seen.add(identity)
        last_seq[(frame.camera_id, frame.session_id)] = frame.seq
        if rule.evaluate(result, states[frame.camera_id], ""):
            expected.add(f"{RULE['name']}/{frame.camera_id}/{frame.session_id}/{frame.seq}")
    return expected


def _partitions_of(line: str) -> list[int]:
    try:
        return list(json.loads(line).get("partitions", []))
    except ValueError:
        return []


def check(chaos: Chaos) -> list[str]:
    bootstrap = chaos.kafka.bootstrap
    failures: list[str] = []
    frames = _frames(bootstrap, chaos.topics["frames_topic"])
    results = _results(bootstrap, chaos.topics["results_topic"])
    by_camera_frames: dict[str, list[wire.FrameId]] = defaultdict(list)
    for frame in frames:
        by_camera_frames[frame.camera_id].append(wire.frame_id(frame))
    by_camera_results: dict[str, list[wire.FrameId]] = defaultdict(list)
    for result in results:
        by_camera_results[result.frame.camera_id].append(wire.frame_id(result.frame))
    duplicates = 0
    for camera, ids in by_camera_frames.items():
        firsts: list[wire.FrameId] = []
        seen: set[wire.FrameId] = set()
        for identity in by_camera_results[camera]:
            if identity in seen:
                duplicates += 1
                continue
            seen.add(identity)
            firsts.append(identity)
        missing = set(ids) - seen
        if missing:
            failures.append(f"{camera}: {len(missing)} acknowledged frames without a result")
        if [i for i in firsts if i in set(ids)] != [i for i in ids if i in seen]:
            failures.append(f"{camera}: results out of capture order")
    # A broker that takes over a partition skips what its predecessor wrote, so
    # kill -9 leaves no duplicate. Only a partition *lost* by a live broker (its
    # session expired while Kafka was paused: a zombie that may still write) can.
    lost = chaos.lost_partition_events()
    duplicate_bound = lost * WINDOW_PER_PARTITION
    if duplicates > duplicate_bound:
        failures.append(
            f"{duplicates} duplicate results; {lost} partitions were lost by a live broker "
            f"(bound {duplicate_bound})"
        )

    letters = []
    for record in read_to_end(bootstrap, chaos.topics["dead_letter_topic"]):
        letter = result_pb2.DeadLetter()
        letter.ParseFromString(record.value or b"")
        letters.append(letter)
    dead = {letter.original_value: letter for letter in letters}
    failures.extend(
        f"poison message {value!r} is not in the dead-letter topic with a reason"
        for value in chaos.poison
        if value not in dead or not dead[value].reason
    )

    expected = expected_alerts(results)
    delivered = Counter(chaos.receiver.event_ids())
    if set(delivered) != expected:
        failures.append(
            f"alerts: expected {sorted(expected - set(delivered))[:5]} missing, "
            f"unexpected {sorted(set(delivered) - expected)[:5]}"
        )
    twice = {key: n for key, n in delivered.items() if n > 1}
    if twice:
        failures.append(f"alerts delivered more than once: {twice}")
    if chaos.receiver.bad_signatures:
        failures.append(f"{chaos.receiver.bad_signatures} webhook calls with a bad signature")

    for name, peak in chaos.peak_rss_mib.items():
        if peak > RSS_LIMIT_MIB:
            failures.append(f"{name}: peak RSS {peak:.0f} MiB")
    for name, gap in chaos.monitor.worst_gap.items():
        if gap > WATCHDOG_GAP_LIMIT_S:
            failures.append(f"{name}: no watchdog ping for {gap:.1f} s while running")

    summary(chaos, frames, results, duplicates, letters, expected, delivered)
    return failures


def summary(
    chaos: Chaos,
    frames: list[wire.Frame],
    results: list[result_pb2.Result],
    duplicates: int,
    letters: list[result_pb2.DeadLetter],
    expected: set[str],
    delivered: Counter[str],
) -> None:
    rows = [("faults injected", ", ".join(f"{k} {n}" for k, n in sorted(chaos.faults.items())))]
    rows += [
        ("frames acknowledged by Kafka", str(len(frames))),
        ("results (raw)", str(len(results))),
        (
            "duplicate results",
            f"{duplicates} (partitions lost by a live broker: {chaos.lost_partition_events()})",
        ),
        ("dead letters / poison injected", f"{len(letters)} / {len(chaos.poison)}"),
        (
            "alerts expected / delivered / duplicated",
            f"{len(expected)} / {len(set(delivered) & expected)} / {sum(n - 1 for n in delivered.values())}",
        ),
        ("webhook repeats absorbed by X-Vspd-Event-Id", str(chaos.receiver.repeats)),
    ]
    rows += [
        (f"peak RSS {name}", f"{peak:.0f} MiB") for name, peak in sorted(chaos.peak_rss_mib.items())
    ]
    rows += [
        (f"worst watchdog gap {name}", f"{gap:.1f} s")
        for name, gap in sorted(chaos.monitor.worst_gap.items())
    ]
    width = max(len(label) for label, _ in rows)
    print("\nchaos summary")
    for label, value in rows:
        print(f"  {label.ljust(width)}  {value}")
