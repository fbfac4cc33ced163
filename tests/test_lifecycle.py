"""The shared daemon lifecycle: systemd notify on a real datagram socket, signals, watchdog."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest

from tests.support.frames import frames_for
from tests.support.metrics import scrape_or_zero
from tests.support.processes import DaemonProcess, free_tcp_port, wait_until
from vspd.runtime.lifecycle import Lifecycle, StopFlag, run_daemon
from vspd.runtime.notify import SystemdNotifier
from vspd.runtime.readiness import READY, Readiness
from vspd.v1 import frame_pb2, processor_pb2_grpc


class NotifySocket:
    """What systemd listens on: an AF_UNIX datagram socket."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))

    def receive(self, timeout_s: float = 30.0) -> str:
        self.sock.settimeout(timeout_s)
        return self.sock.recv(4096).decode()

    def receive_until(self, predicate: Callable[[str], bool], timeout_s: float = 60.0) -> list[str]:
        seen = []
        while True:
            message = self.receive(timeout_s)
            seen.append(message)
            if predicate(message):
                return seen

    def drain(self) -> list[str]:
        self.sock.setblocking(False)
        drained = []
        try:
            while True:
                drained.append(self.sock.recv(4096).decode())
        except BlockingIOError:
            return drained
        finally:
            self.sock.setblocking(True)


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[NotifySocket]:
    listener = NotifySocket(tmp_path / "notify.sock")
    yield listener
    listener.sock.close()


def test_without_notify_socket_everything_is_a_no_op() -> None:
    notifier = SystemdNotifier({})
    assert not notifier.enabled
    notifier.ready("x")
    notifier.status("y")
    notifier.watchdog()
    notifier.stopping()


def test_watchdog_env_for_another_pid_is_ignored() -> None:
    notifier = SystemdNotifier({"WATCHDOG_USEC": "1000000", "WATCHDOG_PID": str(os.getpid() + 1)})
    assert notifier.watchdog_interval_s is None


class HangableDaemon:
    """A daemon whose loop can be made to hang, to see the watchdog pings stop."""

    name = "hangable"

    def __init__(self) -> None:
        self.hang = threading.Event()
        self.hanging = threading.Event()
        self.release = threading.Event()
        self.steps = 0
        self.drained = False

    def start(self) -> None:
        pass

    def step(self) -> None:
        self.steps += 1
        if self.hang.is_set():
            self.hanging.set()
            self.release.wait(30)
            self.hang.clear()
        threading.Event().wait(0.01)

    def status(self) -> str:
        return f"{self.steps} steps"

    def readiness(self) -> Readiness:
        return READY

    def drain(self) -> None:
        self.drained = True


def test_ready_status_watchdog_stopping_and_watchdog_stops_when_loop_hangs(
    notify_socket: NotifySocket,
) -> None:
    notifier = SystemdNotifier(
        {"NOTIFY_SOCKET": str(notify_socket.path), "WATCHDOG_USEC": "200000"}
    )
    daemon = HangableDaemon()
    stop = StopFlag()
    thread = threading.Thread(
        target=run_daemon, args=(daemon, stop, Lifecycle(notifier, daemon.status))
    )
    thread.start()
    try:
        first = notify_socket.receive()
        assert first.startswith("READY=1\nSTATUS=")
        seen: list[str] = []
        notify_socket.receive_until(
            lambda m: (
                seen.append(m) is None
                and "WATCHDOG=1" in seen
                and any(s.startswith("STATUS=") for s in seen)
            )
        )

        daemon.hang.set()
        assert daemon.hanging.wait(30)
        notify_socket.drain()  # pings sent before the hang began
        # Five watchdog intervals of silence: a live loop would ping every 0.1 s.
        notify_socket.sock.settimeout(1.0)
        with pytest.raises(TimeoutError):
            notify_socket.sock.recv(4096)

        daemon.release.set()
        notify_socket.receive_until(lambda m: m == "WATCHDOG=1")
    finally:
        daemon.release.set()
        stop.set()
        thread.join(30)
    assert daemon.drained
    remaining = notify_socket.drain()
    assert any(m.startswith("STOPPING=1") for m in remaining)


def test_real_daemon_notifies_and_stops_gracefully_on_sigterm(
    notify_socket: NotifySocket, write_config: Callable[..., Path], tmp_path: Path
) -> None:
    port = free_tcp_port()
    config = write_config(processor={"listen": f"127.0.0.1:{port}"})
    daemon = DaemonProcess(
        ["--config", str(config), "processor"],
        tmp_path / "processor.log",
        {"NOTIFY_SOCKET": str(notify_socket.path), "WATCHDOG_USEC": "2000000"},
    ).start()
    try:
        ready = notify_socket.receive_until(lambda m: m.startswith("READY=1"))
        assert "STATUS=motion on :" in ready[-1]
        notify_socket.receive_until(lambda m: m == "WATCHDOG=1")
        daemon.signal(signal.SIGTERM)
        notify_socket.receive_until(lambda m: m.startswith("STOPPING=1"))
        assert daemon.wait(60) == 0
    finally:
        daemon.stop()
    log = daemon.log()
    assert '"event": "draining"' in log
    assert '"event": "stopped"' in log
    assert '"daemon": "processor"' in log


@contextlib.contextmanager
def processor_with_a_call_that_never_ends(
    write_config: Callable[..., Path], tmp_path: Path, grace_period_s: float
) -> Iterator[DaemonProcess]:
    """A real processor whose one call blocks in the plug-in for ever (a gate never opened)."""
    port, metrics_port = free_tcp_port(), free_tcp_port()
    config = write_config(
        processor={
            "listen": f"127.0.0.1:{port}",
            "plugin": "tests.plugins.sample:behave",
            "grace_period_s": grace_period_s,
        },
        metrics={"enabled": True, "processor_port": metrics_port},
    )
    daemon = DaemonProcess(["--config", str(config), "processor"], tmp_path / "p.log").start()
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    try:
        daemon.wait_for_log('"event": "serving"')
        frame = frame_pb2.Frame.FromString(frames_for(["held"], 1)[0][1])
        frame.metadata["gate"] = "never-opened"
        call = processor_pb2_grpc.ProcessorStub(channel).Process.future(frame, timeout=120)
        wait_until(
            lambda: scrape_or_zero(metrics_port, "vspd_processor_in_flight") >= 1, 30, "the call"
        )
        yield daemon
        call.cancel()
    finally:
        channel.close()
        daemon.stop()


def test_second_sigint_exits_at_once(write_config: Callable[..., Path], tmp_path: Path) -> None:
    # The call keeps the drain waiting for its 60-second grace period.
    with processor_with_a_call_that_never_ends(write_config, tmp_path, 60.0) as daemon:
        daemon.signal(signal.SIGINT)
        daemon.wait_for_log('"event": "draining"')
        # It says what it waits for, and how not to wait.
        draining = next(line for line in daemon.log().splitlines() if '"draining"' in line)
        assert '"hint": "a second Ctrl-C quits at once"' in draining
        assert '"status": "tests.plugins.sample:behave on :' in draining
        daemon.signal(signal.SIGINT)
        assert daemon.wait(30) == 130  # did not wait for the 60-second grace period


def test_a_status_with_any_text_reaches_systemd_as_utf8(notify_socket: NotifySocket) -> None:
    notifier = SystemdNotifier({"NOTIFY_SOCKET": str(notify_socket.path)})
    try:
        notifier.status("failing hook (http://h/\u2026): café ✓")
        assert notify_socket.receive() == "STATUS=failing hook (http://h/\u2026): café ✓"
    finally:
        notifier.close()


def test_a_daemon_that_cannot_go_on_stops_the_watchdog_and_healthz(
    notify_socket: NotifySocket,
) -> None:
    notifier = SystemdNotifier(
        {"NOTIFY_SOCKET": str(notify_socket.path), "WATCHDOG_USEC": "2"}  # every tick may ping
    )
    alive = [True]
    lifecycle = Lifecycle(notifier, lambda: "ok", alive=lambda: alive[0])
    try:
        lifecycle.tick()
        assert "WATCHDOG=1" in notify_socket.drain()
        alive[0] = False  # e.g. a camera read that hangs
        lifecycle.tick()
        lifecycle.tick()
        assert "WATCHDOG=1" not in notify_socket.drain()
        assert lifecycle.seconds_since_progress() == float("inf")
        alive[0] = True
        lifecycle.tick()
        assert "WATCHDOG=1" in notify_socket.drain()
        assert lifecycle.seconds_since_progress() < 1
    finally:
        notifier.close()


def test_at_a_terminal_the_status_line_is_printed_now_and_then() -> None:
    from structlog.testing import capture_logs

    notifier = SystemdNotifier({})  # not under systemd
    texts = iter(["1 ok", "2 ok", "3 ok"])
    lifecycle = Lifecycle(notifier, lambda: next(texts), at_terminal=True)
    lifecycle._last_printed = float("-inf")  # as if the interval had passed
    with capture_logs() as printed:
        lifecycle.tick()
        lifecycle.tick()  # within the interval: not printed again
    assert [(entry["event"], entry["status"]) for entry in printed] == [("status", "1 ok")]
    quiet = Lifecycle(notifier, lambda: "x", at_terminal=False)
    quiet._last_printed = float("-inf")
    with capture_logs() as printed:
        quiet.tick()
    assert printed == []  # under systemd the STATUS= line is enough


def test_a_plugin_call_that_never_ends_does_not_hold_the_exit(
    write_config: Callable[..., Path], tmp_path: Path
) -> None:
    with processor_with_a_call_that_never_ends(write_config, tmp_path, 1.0) as daemon:
        daemon.signal(signal.SIGTERM)
        assert daemon.wait(60) == 0  # after the 1 s grace, not never
        assert "exiting with plug-in calls still running" in daemon.log()
