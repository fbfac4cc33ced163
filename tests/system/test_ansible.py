"""The Ansible role provisions a mini fleet of booted trixie systems over nsenter.

One camera Pi with two synthetic cameras, one host with processor, broker and
alerts, a Tansu broker and a webhook receiver on this host's loopback (the
containers share it). Frames flow, an alert arrives, a second run changes
nothing, check mode works, and changing one camera's fps restarts only it.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.kafka import create_topics, read_topic, unique_name
from tests.support.peers import WebhookReceiver
from tests.support.processes import wait_until
from tests.support.tansu import TansuBroker, free_port
from tests.system.rootfs import REPO, BootedSystem, fresh_rootfs
from vspd import wire

pytestmark = pytest.mark.system

ANSIBLE = REPO / "ansible"
SECRET = "fleet-webhook-secret"


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, BootedSystem]]:
    work = tmp_path_factory.mktemp("fleet")
    systems = {}
    try:
        for name in ("pi", "server"):
            systems[name] = BootedSystem(fresh_rootfs(work / name), f"vspd-fleet-{name}").boot()
        yield systems
    finally:
        for system in systems.values():
            system.shutdown()
        shutil.rmtree(work, ignore_errors=True)


def inventory(
    fleet: dict[str, BootedSystem],
    deb: Path,
    kafka: TansuBroker,
    topics: dict[str, str],
    receiver: WebhookReceiver,
    processor_port: int,
    fps_a: float,
) -> dict[str, Any]:
    connection = {
        "ansible_connection": "community.docker.nsenter",
        "ansible_python_interpreter": "/usr/bin/python3",
        "ansible_become": False,
    }
    return {
        "vspd": {
            "vars": {
                "vspd_package_source": "file",
                "vspd_package_file": str(deb),
                "vspd_kafka": {
                    "bootstrap_servers": kafka.bootstrap,
                    "session_timeout_ms": 6000,
                    **topics,
                },
                "vspd_metrics": {"enabled": False},
            },
            "children": {
                "vspd_camera_pis": {
                    "hosts": {
                        "pi": {
                            **connection,
                            "ansible_nsenter_pid": fleet["pi"].leader,
                            "vspd_cameras": [
                                {
                                    "id": "cam-a",
                                    "source": "synthetic:?objects=2&seed=1",
                                    "fps": fps_a,
                                    "width": 320,
                                    "height": 240,
                                },
                                {
                                    "id": "cam-b",
                                    "source": "synthetic:?objects=2&seed=2",
                                    "fps": 4.0,
                                    "width": 320,
                                    "height": 240,
                                },
                            ],
                        }
                    }
                },
                "vspd_processing": {
                    "hosts": {
                        "server": {
                            **connection,
                            "ansible_nsenter_pid": fleet["server"].leader,
                            "vspd_services": ["processor", "broker", "alerts"],
                            "vspd_processor": {
                                "listen": f"127.0.0.1:{processor_port}",
                                "builtin": "motion",
                                "workers": 2,
                            },
                            "vspd_broker": {
                                "processor_addresses": [f"127.0.0.1:{processor_port}"],
                                "group_id": f"fleet-{topics['frames_topic']}",
                            },
                            "vspd_alerts": {
                                "group_id": f"fleet-alerts-{topics['frames_topic']}",
                                "rules": [
                                    {
                                        "name": "moving",
                                        "labels": ["motion"],
                                        "min_frames": 2,
                                        "cooldown_s": 30.0,
                                    }
                                ],
                                "sinks": [
                                    {
                                        "type": "webhook",
                                        "name": "home",
                                        "url": receiver.url,
                                        "secret": "credential:webhook-home",
                                    }
                                ],
                            },
                            "vspd_credentials": {"alerts/webhook-home": SECRET},
                        }
                    }
                },
            },
        }
    }


def playbook(inventory_file: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "ANSIBLE_CONFIG": str(ANSIBLE / "ansible.cfg"),
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_HOST_KEY_CHECKING": "False",
        "ANSIBLE_STDOUT_CALLBACK": "default",
    }
    ansible = shutil.which("ansible-playbook") or str(
        Path(os.sys.executable).parent / "ansible-playbook"
    )
    return subprocess.run(
        [ansible, "-i", str(inventory_file), str(ANSIBLE / "site.yml"), *extra],
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
        check=False,
    )


def recap(output: str) -> dict[str, dict[str, int]]:
    hosts = {}
    for host, counts in re.findall(r"^(\w+)\s+:\s+(ok=.*)$", output, re.MULTILINE):
        hosts[host] = {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", counts)}
    return hosts


def main_pids(system: BootedSystem, units: list[str]) -> dict[str, str]:
    return {unit: system.sh(f"systemctl show -p MainPID --value {unit}").strip() for unit in units}


def test_playbook_provisions_a_fleet(
    fleet: dict[str, BootedSystem], deb_package: Path, kafka_broker: TansuBroker, tmp_path: Path
) -> None:
    topics = {
        "frames_topic": unique_name("fleet-frames"),
        "results_topic": unique_name("fleet-results"),
        "dead_letter_topic": unique_name("fleet-dead"),
    }
    create_topics(kafka_broker.bootstrap, list(topics.values()), 2)
    receiver = WebhookReceiver(SECRET.encode())
    processor_port = free_port()
    inventory_file = tmp_path / "inventory.yml"

    def write_inventory(fps_a: float) -> None:
        inventory_file.write_text(
            yaml.safe_dump(
                inventory(fleet, deb_package, kafka_broker, topics, receiver, processor_port, fps_a)
            )
        )

    try:
        write_inventory(4.0)
        first = playbook(inventory_file)
        assert first.returncode == 0, first.stdout[-6000:] + first.stderr[-3000:]

        # Exactly the units each host needs, running.
        pi, server = fleet["pi"], fleet["server"]
        assert pi.sh("systemctl is-active vspd-capture@cam-a vspd-capture@cam-b").split() == [
            "active",
            "active",
        ]
        assert pi.sh("systemctl is-enabled vspd-broker").strip() == "disabled"
        assert (
            server.sh("systemctl is-active vspd-processor vspd-broker vspd-alerts").split()
            == ["active"] * 3
        )
        assert (
            server.sh("stat -c '%a %U' /etc/vspd/credentials/alerts/webhook-home").strip()
            == "600 root"
        )
        assert SECRET not in first.stdout  # no_log keeps secrets out of the output
        assert SECRET not in server.sh("cat /etc/vspd/vspd.toml")

        records = read_topic(
            kafka_broker.bootstrap,
            topics["results_topic"],
            lambda rs: (
                {wire.decode_result(r.value).frame.camera_id for r in rs} >= {"cam-a", "cam-b"}
            ),
            240,
        )
        assert records
        wait_until(lambda: bool(receiver.accepted), 240, "an alert at the webhook receiver")
        assert receiver.bad_signatures == 0
        assert receiver.accepted[0].json["rule"] == "moving"

        second = playbook(inventory_file)
        assert second.returncode == 0, second.stdout[-4000:]
        assert all(counts["changed"] == 0 for counts in recap(second.stdout).values()), (
            second.stdout[-4000:]
        )

        checked = playbook(inventory_file, "--check", "--diff")
        assert checked.returncode == 0, checked.stdout[-4000:]
        assert all(counts["changed"] == 0 for counts in recap(checked.stdout).values()), (
            checked.stdout[-4000:]
        )

        units_pi = ["vspd-capture@cam-a", "vspd-capture@cam-b"]
        units_server = ["vspd-processor", "vspd-broker", "vspd-alerts"]
        before = {**main_pids(pi, units_pi), **main_pids(server, units_server)}
        write_inventory(2.0)
        preview = playbook(inventory_file, "--check", "--diff")
        assert "-fps = 4.0" in preview.stdout or "fps = 2.0" in preview.stdout, preview.stdout[
            -4000:
        ]
        changed = playbook(inventory_file)
        assert changed.returncode == 0, changed.stdout[-4000:]
        after = {**main_pids(pi, units_pi), **main_pids(server, units_server)}
        assert after["vspd-capture@cam-a"] != before["vspd-capture@cam-a"]
        assert {u: after[u] for u in after if u != "vspd-capture@cam-a"} == {
            u: before[u] for u in before if u != "vspd-capture@cam-a"
        }
        assert "fps = 2.0" in pi.sh("cat /etc/vspd/vspd.toml")
    finally:
        receiver.close()


def test_role_passes_ansible_lint_production_profile() -> None:
    lint = shutil.which("ansible-lint") or str(Path(os.sys.executable).parent / "ansible-lint")
    run = subprocess.run(
        [lint, "--offline", "--profile", "production", "--nocolor"],
        cwd=ANSIBLE,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-4000:]
