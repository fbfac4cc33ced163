"""Every command the README shows is run as written, here or by a named test, or by CI.

A command added to the README without saying what runs it fails here; so
does a named test that no longer exists. The cheap ones run here, as written.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import CHAOS_OVERHEAD_S, pytest_collection_modifyitems

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"

HERE = "here"  # run by this file, as written
# command as the README writes it -> what runs it: HERE, "ci" (scripts/test.sh is what
# .ci/run runs), or "path::test" (a test that runs it; the note says how it differs).
RUN_BY: dict[str, str] = {
    "scripts/demo.sh": "tests/test_demo.py::test_the_readme_demo_script_passes",
    "scripts/test.sh": "ci",
    "vspd demo --cameras 4 --duration 120": "tests/test_demo.py::test_short_demo_passes_and_its_report_shows_alerts",
    "vspd demo --source v4l2:/dev/video0": "tests/test_demo.py::test_a_camera_that_cannot_open_is_named_with_its_reason_and_fails_the_verdict",
    "vspd demo --bootstrap-servers kafka1:9092": "tests/test_demo.py::test_a_demo_on_the_users_cluster_deletes_its_topics",
    "vspd config example > vspd.toml": HERE,
    "vspd check-config vspd.toml": HERE,
    "vspd --config vspd.toml topics create": "tests/test_topics.py::test_topics_create_sets_what_vspd_needs_then_says_what_changed",
    "vspd --config vspd.toml processor": "tests/test_user_mistakes.py::test_processor_listen_port_in_use",
    "vspd --config vspd.toml broker": "tests/test_broker.py::test_two_brokers_share_partitions_and_survive_losing_one",
    "vspd --config vspd.toml capture --camera synthetic-1": "tests/test_capture.py::test_synthetic_cameras_arrive_complete_and_in_order",
    "vspd --config vspd.toml alerts": "tests/test_alerts.py::test_alert_reaches_every_sink_once_with_signature_snapshot_and_attachment",
    "vspd --config vspd.toml replay --since 2026-11-30T08:00 --until 2026-11-30T20:00 --camera porch --results-topic results-new-model --processor-address 127.0.0.1:50061": "tests/test_replay.py::test_replay_writes_one_result_per_frame_of_the_period_in_order",
    "vspd --config vspd.toml status": "tests/test_status.py::test_status_names_stale_cameras_gaps_lag_and_dead_letters",
    "vspd processor --try street.jpg": "tests/test_user_mistakes.py::test_a_plugin_next_to_the_config_imports_and_can_be_tried_on_an_image",
    "vspd report --since 2026-11-24 --until 2026-11-25 --out /tmp/report": "tests/test_alerts.py::test_report_renders_in_headless_chromium",
    "scripts/build-deb.sh": "tests/system/conftest.py::deb_package",
    "apt install ./dist/vspd_0.1.0_all.deb": "tests/system/conftest.py::built_system",
    "$EDITOR /etc/vspd/vspd.toml && vspd check-config": "tests/system/test_debian_package.py::test_nothing_runs_until_configured",
    "systemctl enable --now vspd-capture@porch vspd-capture@garden": "tests/system/test_debian_package.py::pipeline",
    "systemctl enable --now vspd-processor vspd-broker vspd-alerts": "tests/system/test_debian_package.py::pipeline",
    "systemctl status vspd-broker": "tests/system/test_debian_package.py::test_frames_flow_end_to_end_under_systemd",
    "journalctl -u 'vspd-*' -f": "tests/system/test_debian_package.py::test_frames_flow_end_to_end_under_systemd",
    "cd ansible": "tests/system/test_ansible.py::playbook",
    "ansible-playbook -i inventory/example site.yml --check --diff": "tests/system/test_ansible.py::test_playbook_provisions_a_fleet",
    "ansible-playbook -i inventory/example site.yml": "tests/system/test_ansible.py::test_playbook_provisions_a_fleet",
    # The benchmarks are run by hand (speed is not tested); here their command lines are.
    ".venv/bin/python -m bench.capture_bench": HERE,
    ".venv/bin/python -m bench.capture_bench --fps 30": HERE,
    ".venv/bin/python -m bench.processor_bench": HERE,
    ".venv/bin/python -m bench.broker_bench": HERE,
    ".venv/bin/python -m bench.pipeline_bench --cameras 8": HERE,
    ".venv/bin/python -m bench.clip_bench": HERE,
    ".venv/bin/python -m bench.soak_bench --fps 3": HERE,
    ".venv/bin/pytest tests/chaos -s --chaos-seconds 1800": HERE,
}


def readme_commands() -> list[str]:
    """The lines of the README's ```sh blocks, and the commands of its tables and prose."""
    text = README.read_text(encoding="utf-8")
    commands: list[str] = []
    for block in re.findall(r"```sh\n(.*?)```", text, re.DOTALL):
        for line in block.splitlines():
            command = re.sub(r"\s+#.*$", "", line).strip()
            if command and not command.startswith("#"):
                commands.append(command)
    # `.venv/bin/...` commands in tables and text (the benchmarks, the long chaos run).
    commands += re.findall(r"`(\.venv/bin/[^`]+)`", text)
    return list(dict.fromkeys(commands))


def test_every_readme_command_says_what_runs_it() -> None:
    commands = readme_commands()
    assert [c for c in commands if c not in RUN_BY] == []
    assert [c for c in RUN_BY if c not in commands] == []  # no stale entries


@pytest.mark.parametrize("runner", sorted({r for r in RUN_BY.values() if "::" in r}))
def test_the_named_tests_exist(runner: str) -> None:
    path, _, name = runner.partition("::")
    source = (REPO / path).read_text(encoding="utf-8")
    assert re.search(rf"^def {re.escape(name)}\(", source, re.MULTILINE), runner


def test_configuration_commands_run_as_written(tmp_path: Path) -> None:
    example = subprocess.run(  # noqa: S602 - the README's own command line, as written
        "vspd config example > vspd.toml && vspd check-config vspd.toml",
        shell=True,
        cwd=tmp_path,
        env={**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert example.returncode == 0, example.stderr
    assert example.stdout.startswith("vspd.toml: ok (")


@pytest.mark.parametrize(
    "command", [c for c, runner in RUN_BY.items() if runner == HERE and "bench." in c]
)
def test_benchmark_command_lines_parse(command: str) -> None:
    # Run by hand for their figures; their command line must stay valid (--help parses it).
    module = command.split()[2]
    run = subprocess.run(
        [sys.executable, "-m", module, "--help"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith("usage:")


def test_the_long_chaos_run_gets_a_time_limit_that_fits_it() -> None:
    # `pytest tests/chaos --chaos-seconds 1800` used to be killed by the suite's 300 s limit.
    class Config:
        def getoption(self, name: str) -> Any:
            assert name == "--chaos-seconds"
            return 1800.0

    class Item:
        def __init__(self, nodeid: str) -> None:
            self.nodeid = nodeid
            self.markers: list[Any] = []

        def add_marker(self, marker: Any) -> None:
            self.markers.append(marker)

        def get_closest_marker(self, name: str) -> Any:
            return next((m for m in self.markers if m.name == name), None)

    chaos, other = Item("tests/chaos/test_chaos.py::test_chaos"), Item("tests/test_wire.py::t")
    emulated = Item("tests/system/test_arm64.py::t")
    emulated.add_marker(pytest.mark.emulated)
    items = [emulated, chaos, other]
    pytest_collection_modifyitems(Config(), items)  # type: ignore[arg-type]
    (limit,) = chaos.markers
    assert limit.name == "timeout"
    assert limit.args == (1800.0 + CHAOS_OVERHEAD_S,)
    assert other.markers == []
    assert items == [chaos, other, emulated]  # emulated ones last (their rootfs is slow)
