"""Fixtures: one real Tansu broker per session, fresh topics and configs per test."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.kafka import create_topics, unique_name
from tests.support.processes import DaemonProcess
from tests.support.tansu import TansuBroker, free_port

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


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(item) for item in value) + "]"
    raise TypeError(value)


def render_toml(data: dict[str, Any]) -> str:
    """A tiny TOML writer for test configs (sections, arrays of tables, scalars)."""
    lines: list[str] = []

    def table(prefix: str, body: dict[str, Any], header: str) -> None:
        scalars = {k: v for k, v in body.items() if not isinstance(v, dict) and not _is_tables(v)}
        lines.append(header)
        lines.extend(f"{key} = {toml_value(value)}" for key, value in scalars.items())
        for key, value in body.items():
            if isinstance(value, dict):
                table(f"{prefix}.{key}", value, f"[{prefix}.{key}]")
            elif _is_tables(value):
                for item in value:
                    table(f"{prefix}.{key}", item, f"[[{prefix}.{key}]]")

    for section, body in data.items():
        if _is_tables(body):
            for item in body:
                table(section, item, f"[[{section}]]")
        else:
            table(section, body, f"[{section}]")
    return "\n".join(lines) + "\n"


def _is_tables(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(item, dict) for item in value)


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
