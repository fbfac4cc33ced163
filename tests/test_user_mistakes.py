"""A user mistake is one clear line and exit 1, never a traceback (issue #20's "first hour").

Each case is what a new user really did; the message is part of the contract.
"""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np

from vspd.alerts import store
from vspd.config.toml_writer import render_toml


def vspd(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "vspd", *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
        cwd=cwd,
    )


def one_line_failure(run: subprocess.CompletedProcess[str]) -> str:
    assert run.returncode == 1, (run.returncode, run.stdout, run.stderr)
    assert "Traceback" not in run.stderr
    lines = [line for line in run.stderr.splitlines() if line.startswith("vspd ")]
    assert len(lines) == 1, run.stderr
    return lines[0]


def write_config(directory: Path, data: dict[str, object]) -> Path:
    path = directory / "vspd.toml"
    path.write_text(render_toml(data))
    return path


PLUGIN = """
from vspd.processor.plugin import Detection

def detect(frame):
    return [Detection("car", 0.9, (0.25, 0.25, 0.75, 0.75))]
"""


def test_a_plugin_next_to_the_config_imports_and_can_be_tried_on_an_image(tmp_path: Path) -> None:
    package = tmp_path / "plugins" / "mymodels"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "cars.py").write_text(PLUGIN)
    # Run from elsewhere: the plug-in is found through plugin_path (default "plugins",
    # relative to the config file), not through the current directory.
    config = write_config(tmp_path, {"processor": {"plugin": "mymodels.cars:detect"}})
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    check = vspd("check-config", str(config), cwd=elsewhere)
    assert check.returncode == 0, check.stderr
    image = tmp_path / "street.png"
    cv2.imwrite(str(image), np.full((200, 300, 3), 128, np.uint8))

    tried = vspd("processor", "--try", str(image), "--config", str(config), cwd=elsewhere)

    assert tried.returncode == 0, tried.stderr
    lines = tried.stdout.splitlines()
    assert lines[0].startswith("mymodels.cars:detect: 1 detection(s) in ")
    assert lines[1] == "  car 0.90 box (0.250, 0.250)-(0.750, 0.750)"
    drawn = cv2.imread(str(tmp_path / "street.png.boxes.jpg"))
    assert drawn is not None
    assert drawn.shape == (200, 300, 3)
    # The box's edge is drawn in red where the input was plain grey.
    blue, green, red = (int(v) for v in drawn[50, 150])
    assert red > 180
    assert green < 80
    assert blue < 80


def test_check_config_imports_the_plugin_and_names_the_search_path(tmp_path: Path) -> None:
    config = write_config(tmp_path, {"processor": {"plugin": "mymodels.bikes:detect"}})
    run = vspd("check-config", "--config", str(config))
    assert run.returncode == 1
    assert run.stderr.splitlines()[0] == (
        f"{config}: processor.plugin: plug-in 'mymodels.bikes:detect': cannot import "
        "'mymodels.bikes': No module named 'mymodels' "
        f"(plugin_path: {tmp_path / 'plugins'}; put the package in one of those directories "
        "or add its directory there)"
    )


def test_processor_try_on_a_missing_or_broken_image(tmp_path: Path) -> None:
    config = write_config(tmp_path, {"processor": {"builtin": "motion"}})
    missing = one_line_failure(
        vspd("processor", "--try", str(tmp_path / "no.jpg"), "--config", str(config))
    )
    assert missing == f"vspd processor: {tmp_path / 'no.jpg'}: no such file"
    (tmp_path / "notes.txt").write_text("not an image")
    broken = one_line_failure(
        vspd("processor", "--try", str(tmp_path / "notes.txt"), "--config", str(config))
    )
    assert broken == f"vspd processor: {tmp_path / 'notes.txt'}: not a JPEG or PNG image"


def test_processor_listen_port_in_use(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = write_config(
            tmp_path,
            {"processor": {"listen": f"127.0.0.1:{port}"}, "metrics": {"enabled": False}},
        )
        line = one_line_failure(vspd("processor", "--config", str(config)))
    assert (
        line
        == f"vspd processor: cannot listen on 127.0.0.1:{port} (in use, or not an address here)"
    )


def test_alerts_with_a_state_dir_that_cannot_be_made(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("")
    state_dir = tmp_path / "a-file" / "state"
    config = write_config(
        tmp_path,
        {"alerts": {"state_dir": str(state_dir)}, "metrics": {"enabled": False}},
    )
    line = one_line_failure(vspd("alerts", "--config", str(config)))
    assert line.startswith(f"vspd alerts: cannot open the store {state_dir}/alerts.sqlite: ")
    assert line.endswith("(is state_dir writable by this user?)")


def test_report_into_a_path_that_cannot_be_a_directory(tmp_path: Path) -> None:
    state_dir = tmp_path / "state"
    state_dir.mkdir()
    connection = store.connect(store.database_path(state_dir))
    store.migrate(connection)
    connection.close()
    config = write_config(tmp_path, {"alerts": {"state_dir": str(state_dir)}})
    (tmp_path / "a-file").write_text("")
    out = tmp_path / "a-file" / "report"
    line = one_line_failure(
        vspd(
            "report",
            "--config",
            str(config),
            "--since",
            "2026-01-01",
            "--until",
            "2026-01-02",
            "--out",
            str(out),
        )
    )
    assert line == f"vspd report: cannot write the report into {out}: Not a directory"


def test_commands_that_read_kafka_once_say_in_one_line_that_it_cannot_be_reached(
    tmp_path: Path,
) -> None:
    from tests.support.tansu import free_port

    dead = f"127.0.0.1:{free_port()}"  # nothing listens there
    config = write_config(tmp_path, {"kafka": {"bootstrap_servers": dead}})
    status = one_line_failure(vspd("--config", str(config), "--log-level", "error", "status"))
    assert status.startswith(f"vspd status: Kafka at {dead}: ")
    period = ["replay", "--since", "2026-11-29", "--until", "2026-11-30"]
    target = ["--results-topic", "elsewhere"]
    replay = one_line_failure(
        vspd("--config", str(config), "--log-level", "error", *period, *target)
    )
    assert replay.startswith(f"vspd replay: Kafka at {dead}: ")
    wrong = one_line_failure(
        vspd("--config", str(config), *period, *target, "--processor-address", "nowhere")
    )
    assert "'nowhere' is not host:port" in wrong  # refused before Kafka is asked
