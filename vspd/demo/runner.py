"""`vspd demo`: capture, processor, broker and alerts as child processes on one machine.

Starts an embedded Kafka-protocol broker unless --bootstrap-servers is given,
shows live progress, stops cleanly after --duration or Ctrl-C, checks the
outcome from the topics, writes a report and prints a summary. Exit 0 only if
every frame Kafka acknowledged got its result, in order per camera.
"""

from __future__ import annotations

import argparse
import base64
import json
import shutil
import socket
import sqlite3
import sys
import time
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

from jinja2 import Environment

from vspd.alerts import reports, store
from vspd.alerts.snapshots import thumbnail
from vspd.config import VspdConfig, load_config
from vspd.config.toml_writer import render_toml
from vspd.demo.children import Child, total
from vspd.demo.embedded_kafka import LISTEN_PORTS, EmbeddedKafka, free_port
from vspd.demo.verify import Verdict, verify
from vspd.errors import VspdError
from vspd.runtime.lifecycle import StopFlag
from vspd.runtime.topics import create_topics

DRAIN_TIMEOUT_S = 60.0


def consecutive_free_ports(count: int) -> int:
    """A base port with `count` free ports after it (capture uses capture_port + index)."""
    for _ in range(200):
        base = free_port()
        if base + count > LISTEN_PORTS.stop:
            continue
        try:
            sockets = []
            for port in range(base, base + count):
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                sockets.append(sock)
                sock.bind(("127.0.0.1", port))
        except OSError:
            continue
        finally:
            for sock in sockets:
                sock.close()
        return base
    raise VspdError("no block of free ports for the demo's metrics endpoints")


def say(text: str) -> None:
    print(text, flush=True)  # noqa: T201 - the demo talks to its user


class Demo:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.report_dir: Path = args.report_dir.resolve()
        self.state_dir = self.report_dir / "state"
        self.log_dir = self.report_dir / "logs"
        self.run_id = uuid.uuid4().hex[:8]
        self.kafka: EmbeddedKafka | None = None
        self.children: list[Child] = []
        self.captures: list[Child] = []
        self.stop = StopFlag().install()
        self.tty = sys.stdout.isatty()
        # What a camera's source said when it could not deliver (from its /readyz).
        self.camera_problems: dict[str, str] = {}

    # -- set-up ----------------------------------------------------------------
    def sources(self) -> list[tuple[str, str]]:
        if self.args.source:
            return [(f"source-{i + 1}", uri) for i, uri in enumerate(self.args.source)]
        return [
            (f"synthetic-{i + 1}", f"synthetic:?objects=3&seed={i + 1}")
            for i in range(self.args.cameras)
        ]

    def write_config(self, bootstrap: str) -> Path:
        cameras = self.sources()
        processor_port = free_port()
        base = consecutive_free_ports(len(cameras) + 3)
        data: dict[str, Any] = {
            "kafka": {
                "bootstrap_servers": bootstrap,
                "frames_topic": f"vspd-demo-{self.run_id}.frames",
                "results_topic": f"vspd-demo-{self.run_id}.results",
                "dead_letter_topic": f"vspd-demo-{self.run_id}.dead-letter",
                "partitions": max(2, len(cameras)),
                "session_timeout_ms": 6000,
            },
            "cameras": [
                {
                    "id": camera,
                    "source": uri,
                    "fps": 10.0,
                    "width": 640,
                    "height": 480,
                    "jpeg_quality": 80,
                }
                for camera, uri in cameras
            ],
            "broker": {
                "processor_addresses": [f"127.0.0.1:{processor_port}"],
                "group_id": f"vspd-demo-{self.run_id}",
                "include_image": True,
            },
            "processor": {
                "listen": f"127.0.0.1:{processor_port}",
                "builtin": "motion",
                "workers": 2,
            },
            "alerts": {
                "group_id": f"vspd-demo-alerts-{self.run_id}",
                "state_dir": str(self.state_dir),
                "reports_dir": str(self.report_dir / "periodic"),
                "report_periods": ["hourly"],
                "rules": [
                    {
                        "name": "moving-object",
                        "labels": ["motion"],
                        "min_confidence": 0.3,
                        "min_frames": 3,
                        "window_s": 2.0,
                        "cooldown_s": 10.0,
                        "message": "{{ label }} on {{ camera }} ({{ count }} frames, {{ '%.0f' % (confidence * 100) }}%)",
                    }
                ],
                "sinks": [{"type": "log", "name": "journal"}],
            },
            "metrics": {
                "enabled": True,
                "host": "127.0.0.1",
                "processor_port": base,
                "broker_port": base + 1,
                "alerts_port": base + 2,
                "capture_port": base + 3,
            },
            "logging": {"level": "info", "format": "json"},
        }
        path = self.report_dir / "vspd-demo.toml"
        path.write_text(render_toml(data), encoding="utf-8")
        return path

    # -- running -----------------------------------------------------------------
    def run(self) -> int:
        for stale in (self.state_dir, self.log_dir):
            shutil.rmtree(stale, ignore_errors=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        try:
            return self._run()
        finally:
            for child in reversed(self.children):
                child.stop(timeout_s=10)
            if self.kafka is not None:
                self.kafka.stop()

    def _run(self) -> int:
        bootstrap = self.args.bootstrap_servers
        if not bootstrap:
            self.kafka = EmbeddedKafka(self.log_dir / "kafka.log")
            self.kafka.start()
            bootstrap = self.kafka.bootstrap
            say(f"embedded Kafka-protocol broker (Tansu) on {bootstrap}")
        config_path = self.write_config(bootstrap)
        config = load_config(config_path, {})
        create_topics(config.kafka)
        say(f"config {config_path}; logs in {self.log_dir}")
        started = datetime.now().astimezone()
        self.start_children(config, config_path)
        self.watch(config)
        self.shut_down()
        ended = datetime.now().astimezone()
        verdict = verify(config.kafka)
        for camera in config.cameras:
            if not verdict.per_camera.get(camera.id):
                verdict.silent_cameras[camera.id] = self.camera_problems.get(
                    camera.id, f"see {self.log_dir / f'capture@{camera.id}.log'}"
                )
        dropped = self.dropped_before_kafka()
        index = self.write_report(config, started, ended, verdict, dropped, bootstrap)
        self.summary(verdict, dropped, index)
        if self.args.bootstrap_servers:
            self.delete_topics(config)
        return 0 if verdict.ok else 1

    def delete_topics(self, config: VspdConfig) -> None:
        """A demo against the user's cluster leaves nothing behind there."""
        from confluent_kafka.admin import AdminClient

        from vspd.runtime.kafka import common_settings
        from vspd.runtime.topics import configured_topics

        topics = configured_topics(config.kafka)
        admin = AdminClient(common_settings(config.kafka, "vspd-demo-admin"))
        failed = []
        for topic, future in admin.delete_topics(topics, request_timeout=15).items():
            try:
                future.result(timeout=20)
            except Exception as exc:  # noqa: BLE001 - said, and the demo's verdict stands
                failed.append(f"{topic} ({exc})")
        if failed:
            say("could not delete the demo's topics: " + "; ".join(failed))
        else:
            say(
                f"deleted the demo's topics from {config.kafka.bootstrap_servers}: "
                + ", ".join(topics)
            )

    def start_children(self, config: VspdConfig, config_path: Path) -> None:
        base = ["--config", str(config_path)]
        metrics = config.metrics
        self.children.append(
            Child("processor", [*base, "processor"], self.log_dir, metrics.processor_port).start()
        )
        self.children.append(
            Child("broker", [*base, "broker"], self.log_dir, metrics.broker_port).start()
        )
        self.children.append(
            Child("alerts", [*base, "alerts"], self.log_dir, metrics.alerts_port).start()
        )
        for index, camera in enumerate(config.cameras):
            child = Child(
                f"capture@{camera.id}",
                [*base, "capture", "--camera", camera.id],
                self.log_dir,
                metrics.capture_port + index,
            ).start()
            self.captures.append(child)
            self.children.append(child)
        say(f"started {len(self.children)} daemons: " + ", ".join(c.name for c in self.children))

    def watch(self, config: VspdConfig) -> None:
        deadline = time.monotonic() + self.args.duration
        started = time.monotonic()
        last: tuple[float, float, float] | None = None
        next_line = 0.0
        while time.monotonic() < deadline and not self.stop.is_set():
            self.stop.wait(1.0)
            failed = [c.name for c in self.children if not c.running]
            if failed:
                say(f"\ndaemon(s) exited early: {', '.join(failed)}; see {self.log_dir}")
                break
            self._say_camera_problems()
            figures = self.figures()
            now = time.monotonic()
            rates = (0.0, 0.0)
            if last is not None:
                span = now - last[0]
                rates = ((figures["sent"] - last[1]) / span, (figures["results"] - last[2]) / span)
            last = (now, figures["sent"], figures["results"])
            line = (
                f"[{now - started:4.0f}s] capture {rates[0]:5.1f} fps ({figures['sent']:.0f} sent, "
                f"{figures['dropped']:.0f} dropped) | broker {rates[1]:5.1f} results/s, "
                f"{figures['in_flight']:.0f} in flight, lag {figures['lag']:.0f} | alerts {figures['alerts']:.0f}"
            )
            if self.tty:
                print("\r" + line, end="", flush=True)  # noqa: T201
            elif now >= next_line:
                say(line)
                next_line = now + 5
        if self.tty:
            say("")
        if self.stop.is_set():
            say("stopping (Ctrl-C again to stop at once)")

    def _say_camera_problems(self) -> None:
        """A camera that cannot deliver says why, once per new reason (not 0 fps in silence)."""
        for child in self.captures:
            reason = child.readiness()
            if not reason.startswith("camera") or reason.startswith("camera connecting"):
                continue
            camera = child.name.removeprefix("capture@")
            if self.camera_problems.get(camera) != reason:
                self.camera_problems[camera] = reason
                say(("\n" if self.tty else "") + f"{child.name}: {reason}")

    def figures(self) -> dict[str, float]:
        capture = [c.metrics() for c in self.captures]
        broker = self.child("broker").metrics()
        alerts = self.child("alerts").metrics()
        return {
            "sent": sum(total(m, "vspd_capture_frames_sent_total") for m in capture),
            "dropped": sum(total(m, "vspd_capture_frames_dropped_total") for m in capture),
            "results": total(broker, "vspd_broker_results_total"),
            "in_flight": total(broker, "vspd_broker_calls_in_flight"),
            "lag": total(broker, "vspd_broker_consumer_lag"),
            "alerts": total(alerts, "vspd_alerts_events_total"),
            "alerts_results": total(alerts, "vspd_alerts_results_total")
            + total(alerts, "vspd_alerts_duplicate_results_total"),
        }

    def child(self, name: str) -> Child:
        return next(c for c in self.children if c.name == name)

    def shut_down(self) -> None:
        """Cameras first; then let the broker and alerts finish what is in Kafka; then the rest."""
        self.sent_at_stop = 0.0
        sent_before = {
            c.name: total(c.metrics(), "vspd_capture_frames_sent_total") for c in self.captures
        }
        for child in self.captures:
            child.stop()
        self.sent_at_stop = sum(sent_before.values())
        frames = self._frames_in_kafka()
        self._wait_for(lambda f: f["results"] >= frames, "the broker to process every frame")
        broker_results = self.figures()["results"]
        self._wait_for(
            lambda f: f["alerts_results"] >= broker_results,
            "the alerts daemon to read every result",
        )
        for name in ("broker", "alerts", "processor"):
            code = self.child(name).stop()
            if code not in (0, None):
                say(f"{name} exited with {code}; see {self.log_dir / (name + '.log')}")

    def _frames_in_kafka(self) -> float:
        # What the cameras say they sent in the end (acknowledged by Kafka).
        return max(sum(self._final_figure(c, "sent") for c in self.captures), self.sent_at_stop)

    @staticmethod
    def _final_figure(child: Child, name: str) -> int:
        """A figure of a camera's "capture ended" log line (JSON), e.g. sent; 0 if none."""
        for line in reversed(child.log_path.read_text(errors="replace").splitlines()):
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict) and record.get("event") == "capture ended":
                return int(record.get(name, 0))
        return 0

    def _wait_for(self, condition: Any, what: str) -> None:
        # Also after Ctrl-C: what reached Kafka is finished (a second Ctrl-C exits at once).
        deadline = time.monotonic() + DRAIN_TIMEOUT_S
        while time.monotonic() < deadline:
            if condition(self.figures()):
                return
            time.sleep(0.2)
        say(f"gave up waiting for {what} after {DRAIN_TIMEOUT_S:.0f}s")

    def dropped_before_kafka(self) -> int:
        return sum(self._final_figure(c, "dropped") for c in self.captures)

    # -- reporting ---------------------------------------------------------------
    def write_report(
        self,
        config: VspdConfig,
        since: datetime,
        until: datetime,
        verdict: Verdict,
        dropped: int,
        bootstrap: str,
    ) -> Path:
        database = store.database_path(self.state_dir)
        period = reports.Period("demo", since, until)
        cameras: list[dict[str, Any]] = []
        alerts: list[dict[str, Any]] = []
        if database.exists():
            connection = store.connect(database)
            try:
                reports.write_period(connection, period, self.report_dir, self.state_dir)
                cameras, alerts = self._demo_view(connection, config, period)
            finally:
                connection.close()
        template = reports.template_text("demo.html.j2")
        html = (
            Environment(autoescape=True)
            .from_string(template)
            .render(
                since=since.strftime("%Y-%m-%d %H:%M:%S"),
                until=until.strftime("%H:%M:%S %Z"),
                cameras=cameras,
                alerts=alerts,
                verdict=verdict,
                dropped=dropped,
                bootstrap=bootstrap,
            )
        )
        index = self.report_dir / "index.html"
        index.write_text(html, encoding="utf-8")
        return index

    def _demo_view(
        self, connection: sqlite3.Connection, config: VspdConfig, period: reports.Period
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        cameras, alerts = [], []
        for camera in config.cameras:
            data = reports.gather(connection, camera.id, period, self.state_dir)
            colors = {
                label: reports.PALETTE[i % len(reports.PALETTE)]
                for i, label in enumerate(sorted({r["label"] for r in data["timeline"]}))
            }
            cameras.append(
                {
                    "id": camera.id,
                    "page": f"{camera.id}/{period.slug}.html",
                    "frames": data["health"]["results"],
                    "alerts": len(data["alerts"]),
                    "chart": reports.chart_svg(data, period, colors),
                }
            )
            for alert in data["alerts"]:
                thumb = ""
                if alert["snapshot"]:
                    path = self.state_dir / alert["snapshot"]
                    if path.exists():
                        thumb = base64.b64encode(thumbnail(path.read_bytes())).decode()
                alerts.append(
                    {
                        "camera": camera.id,
                        "message": alert["message"],
                        "thumbnail": thumb,
                        "snapshot_href": reports.state_file_href(
                            self.state_dir, alert["snapshot"], self.report_dir
                        ),
                        "time_text": datetime.fromtimestamp(alert["time_ns"] / 1e9).strftime(
                            "%H:%M:%S"
                        ),
                    }
                )
        return cameras, alerts

    def summary(self, verdict: Verdict, dropped: int, index: Path) -> None:
        alerts = store.event_count(store.database_path(self.state_dir))
        say("")
        say("vspd demo summary")
        say(
            f"  frames captured into Kafka  {verdict.frames}  ({dropped} dropped before Kafka, counted)"
        )
        for camera, count in sorted(verdict.per_camera.items()):
            say(f"    {camera:<24} {count}")
        say(f"  results                     {verdict.results}")
        missing = f"  ({', '.join(verdict.missing_examples)})" if verdict.missing_examples else ""
        say(f"  frames without a result     {verdict.missing}{missing}")
        say(
            f"  in order per camera         {'yes' if not verdict.out_of_order_cameras else 'NO: ' + ', '.join(verdict.out_of_order_cameras)}"
        )
        say(f"  duplicate results           {verdict.duplicates}")
        say(f"  dead letters                {verdict.dead_letters}")
        say(f"  alerts                      {alerts}")
        for camera, why in verdict.silent_cameras.items():
            say(f"  camera without frames       {camera}: {why}")
        say(
            f"  verdict                     {'PASS' if verdict.ok else 'FAIL'}: {verdict.explanation()}"
        )
        say(f"report: {index}")


def main(_config: VspdConfig, args: argparse.Namespace) -> int:
    if args.cameras < 1 and not args.source:
        raise VspdError("--cameras must be at least 1")
    if args.duration <= 0:
        raise VspdError("--duration must be positive")
    return Demo(args).run()
