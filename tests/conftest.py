"""Fixtures: one real Tansu broker per session, fresh topics and configs per test."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.kafka import create_topics, unique_name
from tests.support.peers import Mosquitto, SmtpServer
from tests.support.processes import DaemonProcess
from tests.support.tansu import TansuBroker, free_port
from vspd.config.toml_writer import render_toml


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("chaos", "the fault-injection suite (tests/chaos)")
    group.addoption(
        "--chaos-seconds", type=float, default=75.0, help="how long faults are injected"
    )
    group.addoption(
        "--chaos-seed", type=int, default=None, help="seed of the fault schedule (random if unset)"
    )
    fuzz = parser.getgroup("fuzz", "hostile input (tests/test_hostile_input.py)")
    fuzz.addoption("--fuzz-messages", type=int, default=10_000, help="hostile messages per run")
    fuzz.addoption("--fuzz-seed", type=int, default=None, help="seed (random if unset)")


# What the chaos suite needs beyond its fault-injection time: start-up, draining, checks.
CHAOS_OVERHEAD_S = 300.0
# A system test's set-up may build the rootfs (debootstrap, apt) and the package first.
SYSTEM_TEST_LIMIT_S = 1200.0


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The chaos run's time limit follows --chaos-seconds (the suite's 300 s would kill a long run).

    Tests under emulation run last: scripts/test.sh begins their rootfs in the background
    (minutes under qemu), so that it is made while everything else is tested.
    """
    limit = float(config.getoption("--chaos-seconds")) + CHAOS_OVERHEAD_S
    for item in items:
        if "tests/chaos/" in item.nodeid:
            item.add_marker(pytest.mark.timeout(max(limit, 300.0)))
        elif item.get_closest_marker("system") and not item.get_closest_marker("timeout"):
            # The first system test builds the trixie rootfs and the .deb in its set-up.
            item.add_marker(pytest.mark.timeout(SYSTEM_TEST_LIMIT_S))
    items.sort(key=lambda item: item.get_closest_marker("emulated") is not None)


# New consumer groups get their first assignment after about half of this.
TEST_SESSION_TIMEOUT_MS = 6000


@pytest.fixture(scope="session")
def kafka_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TansuBroker]:
    broker = TansuBroker(free_port(), tmp_path_factory.mktemp("tansu") / "tansu.log")
    broker.start()
    yield broker
    broker.stop()


@pytest.fixture
def bootstrap(kafka_broker: TansuBroker) -> str:
    return kafka_broker.bootstrap


TopicSet = dict[str, str]


@pytest.fixture
def fresh_topics(bootstrap: str) -> Callable[..., TopicSet]:
    """Create new frames/results/dead-letter topics with unique names."""

    def make(partitions: int = 4) -> TopicSet:
        topics = {
            "frames_topic": unique_name("frames"),
            "results_topic": unique_name("results"),
            "dead_letter_topic": unique_name("dead"),
        }
        create_topics(bootstrap, list(topics.values()), partitions)
        return topics

    return make


@pytest.fixture
def write_config(tmp_path: Path, bootstrap: str) -> Callable[..., Path]:
    """Write a vspd.toml for this test's broker; sections given override the defaults."""

    def write(name: str = "vspd.toml", topics: TopicSet | None = None, **sections: Any) -> Path:
        kafka = {"bootstrap_servers": bootstrap, "session_timeout_ms": TEST_SESSION_TIMEOUT_MS}
        kafka.update(topics or {})
        kafka.update(sections.pop("kafka", {}))
        data: dict[str, Any] = {
            "kafka": kafka,
            "metrics": {"enabled": False},
            "logging": {"format": "json", "level": "info"},
            "alerts": {
                "state_dir": str(tmp_path / "state"),
                "reports_dir": str(tmp_path / "reports"),
            },
        }
        for section, body in sections.items():
            if isinstance(body, dict) and isinstance(data.get(section), dict):
                data[section] = {**data[section], **body}
            else:
                data[section] = body
        path = tmp_path / name
        path.write_text(render_toml(data))
        return path

    return write


@pytest.fixture
def daemons(tmp_path: Path) -> Iterator[Callable[..., DaemonProcess]]:
    """Start vspd daemons as real child processes; all are stopped after the test."""
    started: list[DaemonProcess] = []

    def start(
        *args: str, name: str | None = None, env: dict[str, str] | None = None
    ) -> DaemonProcess:
        label = name or args[-1] if args else "vspd"
        daemon = DaemonProcess(list(args), tmp_path / f"{label}-{len(started)}.log", env).start()
        started.append(daemon)
        return daemon

    yield start
    for daemon in reversed(started):
        if daemon.process is not None and daemon.process.poll() is None:
            daemon.process.kill()
            daemon.process.wait()


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[Mosquitto]:
    """Debian's mosquitto on loopback, with a subscriber to everything."""
    broker = Mosquitto(tmp_path)
    yield broker
    broker.close()


@pytest.fixture
def smtp(tmp_path: Path) -> Iterator[SmtpServer]:
    """aiosmtpd with STARTTLS and AUTH, recording every mail."""
    server = SmtpServer(tmp_path)
    yield server
    server.close()
