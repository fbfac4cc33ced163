"""The alerts daemon end to end: real Kafka, real webhook/MQTT/SMTP peers, real SQLite, Chromium."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import sqlite3
import subprocess
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from tests.support.kafka import produce
from tests.support.metrics import samples
from tests.support.peers import Mosquitto, SmtpServer, WebhookReceiver
from tests.support.processes import DaemonProcess, wait_until
from tests.support.results import SECOND, messages, new_session, result
from tests.support.tansu import free_port
from vspd.alerts import store

PERSON = ("person", 0.9, (0.3, 0.2, 0.6, 0.9))
CAT = ("cat", 0.8, (0.1, 0.6, 0.3, 0.9))
SECRET = b"hook-secret"


@pytest.fixture
def webhook() -> Iterator[WebhookReceiver]:
    receiver = WebhookReceiver(SECRET)
    yield receiver
    receiver.close()


class Alerts:
    def __init__(
        self,
        config: Path,
        topics: dict[str, str],
        bootstrap: str,
        daemons: Callable[..., DaemonProcess],
        state: Path,
        metrics_port: int,
    ) -> None:
        self.config, self.topics, self.bootstrap, self.daemons = config, topics, bootstrap, daemons
        self.state = state
        self.metrics_port = metrics_port

    def start(self, name: str = "alerts") -> DaemonProcess:
        daemon = self.daemons("--config", str(self.config), "alerts", name=name)
        daemon.wait_for_log('"event": "serving"')
        return daemon

    def feed(self, results: list[Any]) -> None:
        produce(self.bootstrap, self.topics["results_topic"], messages(results))

    def events(self) -> list[tuple[str, str, int]]:
        connection = sqlite3.connect(store.database_path(self.state))
        try:
            return [
                tuple(row)
                for row in connection.execute("SELECT rule, camera, seq FROM events ORDER BY id")
            ]
        finally:
            connection.close()

    def deliveries(self) -> dict[tuple[int, str], str]:
        connection = sqlite3.connect(store.database_path(self.state))
        try:
            return {
                (row[0], row[1]): row[2]
                for row in connection.execute("SELECT event_id, sink, state FROM deliveries")
            }
        finally:
            connection.close()

    def metric(self, name: str) -> float:
        """A sample by its exposition name, e.g. 'vspd_alerts_pending{sink="ops"}'."""
        base, _, labels = name.partition("{")
        wanted = dict(part.split("=", 1) for part in labels.rstrip("}").split(",") if "=" in part)
        return sum(
            value
            for found, value in samples(self.metrics_port, base)
            if all(found.get(k) == v.strip('"') for k, v in wanted.items())
        )


@pytest.fixture
def alerts_setup(
    bootstrap: str,
    fresh_topics: Callable[..., dict[str, str]],
    write_config: Callable[..., Path],
    daemons: Callable[..., DaemonProcess],
    tmp_path: Path,
    webhook: WebhookReceiver,
    mosquitto: Mosquitto,
    smtp: SmtpServer,
) -> Callable[..., Alerts]:
    def make(**rule: Any) -> Alerts:
        topics = fresh_topics(partitions=2)
        secret_file = tmp_path / "hook-secret"
        secret_file.write_bytes(SECRET)
        smtp_password = tmp_path / "smtp-password"
        smtp_password.write_text(smtp.password)
        metrics_port = free_port()
        rules = [
            {
                "name": "person-at-door",
                "cameras": ["door"],
                "labels": ["person"],
                "min_confidence": 0.5,
                "min_frames": 2,
                "window_s": 5.0,
                "cooldown_s": 60.0,
                "severity": "critical",
                **rule,
            },
            {"name": "sentinel", "labels": ["sentinel"], "min_frames": 1, "cooldown_s": 0.0},
        ]
        sinks = [
            {
                "type": "webhook",
                "name": "ops",
                "url": webhook.url,
                "secret": f"file:{secret_file}",
                "timeout_s": 2.0,
            },
            {
                "type": "mqtt",
                "name": "home",
                "host": "127.0.0.1",
                "port": mosquitto.port,
                "timeout_s": 5.0,
            },
            {
                "type": "email",
                "name": "owner",
                "host": "127.0.0.1",
                "port": smtp.port,
                "starttls": True,
                "ca_file": str(smtp.cert),
                "username": smtp.username,
                "password": f"file:{smtp_password}",
                "sender": "vspd@example.org",
                "recipients": ["owner@example.org"],
            },
            {"type": "log", "name": "journal"},
        ]
        config = write_config(
            topics=topics,
            alerts={
                "rules": rules,
                "sinks": sinks,
                "retry_initial_s": 0.2,
                "retry_max_s": 1.0,
                "snapshot_base_url": "https://nvr.example/snapshots/",
            },
            metrics={"enabled": True, "alerts_port": metrics_port},
        )
        return Alerts(config, topics, bootstrap, daemons, tmp_path / "state", metrics_port)

    return make


def door_event(session: str, start_ns: int) -> list[Any]:
    """Frames 0-2 empty, 3-9 with a person: one alert, at seq 4 (debounce 2)."""
    return [
        result(
            "door",
            seq,
            [PERSON] if seq >= 3 else [],
            session=session,
            at_ns=start_ns + seq * SECOND // 10,
        )
        for seq in range(10)
    ]


def sentinel(session: str, seq: int) -> Any:
    return result("door", seq, [("sentinel", 1.0, (0.0, 0.0, 0.1, 0.1))], session=session)


def mqtt_events(mosquitto: Mosquitto) -> list[dict[str, Any]]:
    return [
        json.loads(payload)
        for topic, payload in list(mosquitto.messages)
        if not topic.endswith("/snapshot")
    ]


def test_alert_reaches_every_sink_once_with_signature_snapshot_and_attachment(
    alerts_setup: Callable[..., Alerts],
    webhook: WebhookReceiver,
    mosquitto: Mosquitto,
    smtp: SmtpServer,
) -> None:
    alerts = alerts_setup()
    daemon = alerts.start()
    session = new_session()
    alerts.feed([*door_event(session, time.time_ns()), result("yard", 0, [CAT], session=session)])
    wait_until(
        lambda: (
            webhook.accepted
            and mqtt_events(mosquitto)
            and smtp.messages
            and "alert" in daemon.log()
        ),
        60,
        "all sinks",
    )

    (hook,) = webhook.accepted
    body = hook.json
    assert webhook.bad_signatures == 0
    assert body["event_id"] == f"person-at-door/door/{session}/4"
    # One line per alert in the daemon's log (the log sink's), under the same id.
    wait_until(lambda: '"event": "alert"' in daemon.log(), 30, "the log sink's line")
    mentions = [
        json.loads(line)["event"]
        for line in daemon.log().splitlines()
        if body["event_id"] in line and line.startswith("{")
    ]
    assert mentions == ["alert"]
    assert hook.headers["X-Vspd-Event-Id"] == body["event_id"]
    assert (body["camera"], body["label"], body["count"], body["severity"]) == (
        "door",
        "person",
        2,
        "critical",
    )
    assert body["snapshot_url"].startswith("https://nvr.example/snapshots/door/")
    assert body["detections"][0]["box"] == [0.3, 0.2, 0.6, 0.9]

    topics = [topic for topic, _ in mosquitto.messages]
    assert topics.count("vspd/door/person-at-door") == 1
    snapshot = dict(mosquitto.messages)["vspd/door/person-at-door/snapshot"]
    image = cv2.imdecode(np.frombuffer(snapshot, np.uint8), cv2.IMREAD_COLOR)
    assert image.shape == (48, 64, 3)
    assert mqtt_events(mosquitto)[0]["event_id"] == body["event_id"]

    (mail,) = smtp.messages
    assert mail["Subject"] == "[vspd critical] person on door"
    attachments = [part for part in mail.walk() if part.get_content_type() == "image/jpeg"]
    assert len(attachments) == 1
    assert '"event": "alert"' in daemon.log()
    assert alerts.events() == [("person-at-door", "door", 4)]
    # The snapshot on disk has the box drawn on it.
    saved = list((alerts.state / "snapshots" / "door").glob("*.jpg"))
    assert len(saved) == 1
    assert daemon.stop() == 0


def test_an_alert_from_an_hour_ago_is_stored_and_reported_but_not_sent(
    alerts_setup: Callable[..., Alerts], mosquitto: Mosquitto
) -> None:
    # A backlog after an outage: the same door event an hour old, then one from now.
    alerts = alerts_setup(max_alert_age_s=300)
    daemon = alerts.start()
    old, new = new_session(), new_session()
    alerts.feed(door_event(old, time.time_ns() - 3600 * SECOND))
    alerts.feed([*door_event(new, time.time_ns()), sentinel(new, 100)])
    wait_until(lambda: any(e["rule"] == "sentinel" for e in mqtt_events(mosquitto)), 60, "sentinel")

    sent = [e for e in mqtt_events(mosquitto) if e["rule"] == "person-at-door"]
    assert [e["event_id"] for e in sent] == [f"person-at-door/door/{new}/4"]
    # The hour-old one is in the store (reports show it), with no delivery at all.
    assert alerts.events()[:2] == [("person-at-door", "door", 4), ("person-at-door", "door", 4)]
    delivered_events = {event_id for event_id, _sink in alerts.deliveries()}
    assert len(delivered_events) == 2  # the new door event and the sentinel
    assert alerts.metric('vspd_alerts_not_notified_total{reason="too_old"}') == 1
    assert "alert raised, not sent: too old" in daemon.log()
    assert daemon.stop() == 0


def test_kill9_between_event_and_delivery_delivers_once_per_sink(
    alerts_setup: Callable[..., Alerts],
    webhook: WebhookReceiver,
    mosquitto: Mosquitto,
    smtp: SmtpServer,
) -> None:
    alerts = alerts_setup()
    webhook.mode = "fail"
    first = alerts.start("alerts-1")
    session = new_session()
    event = door_event(session, time.time_ns())
    alerts.feed(event)
    # The event is stored; MQTT and email got it; the webhook keeps failing.
    wait_until(
        lambda: mqtt_events(mosquitto) and smtp.messages and webhook.refused >= 2,
        60,
        "partial delivery",
    )
    assert alerts.metric('vspd_alerts_pending{sink="ops"}') == 1
    assert "failing ops (HTTP 500" in _last_status(first) or webhook.refused >= 2
    first.kill9()

    webhook.mode = "ok"
    second = alerts.start("alerts-2")
    alerts.feed(event)  # the same results again, as after an upstream crash
    alerts.feed([sentinel(session, 100)])
    wait_until(
        lambda: f"sentinel/door/{session}/100" in webhook.event_ids(),
        60,
        "the sentinel behind the replay",
    )
    wait_until(lambda: len(smtp.messages) >= 2, 60, "sentinel mail")
    # The door's webhook delivery is retried on its own backoff, not necessarily before the sentinel.
    wait_until(
        lambda: set(alerts.deliveries().values()) == {"delivered"}, 60, "every delivery done"
    )

    door_id = f"person-at-door/door/{session}/4"
    assert webhook.event_ids().count(door_id) == 1
    assert [e["event_id"] for e in mqtt_events(mosquitto)].count(door_id) == 1
    assert [m["Subject"] for m in smtp.messages].count("[vspd critical] person on door") == 1
    assert alerts.events() == [("person-at-door", "door", 4), ("sentinel", "door", 100)]
    assert set(alerts.deliveries().values()) == {"delivered"}
    assert second.stop() == 0


def _last_status(daemon: DaemonProcess) -> str:
    found = re.findall(r'"status": "([^"]*)"', daemon.log())
    return found[-1] if found else ""


def test_failing_sink_blocks_neither_other_sinks_nor_consumption(
    alerts_setup: Callable[..., Alerts], webhook: WebhookReceiver, mosquitto: Mosquitto
) -> None:
    alerts = alerts_setup(cooldown_s=0.0, min_frames=1)
    webhook.mode = "fail"
    daemon = alerts.start()
    session = new_session()
    start = time.time_ns()
    alerts.feed(
        [
            result("door", seq, [PERSON], session=session, at_ns=start + seq * SECOND)
            for seq in range(5)
        ]
    )
    wait_until(
        lambda: len(mqtt_events(mosquitto)) >= 5, 60, "MQTT deliveries while the webhook fails"
    )
    wait_until(lambda: alerts.metric("vspd_alerts_results_total") >= 5, 60, "consumption")
    # The gauge is the store's count as of the sink's last pass, which runs on its own thread.
    wait_until(
        lambda: alerts.metric('vspd_alerts_pending{sink="ops"}') == 5, 60, "5 pending for ops"
    )
    assert not webhook.accepted
    webhook.mode = "ok"
    wait_until(lambda: len(webhook.accepted) >= 5, 60, "the webhook catching up")
    assert sorted(webhook.event_ids()) == sorted(
        f"person-at-door/door/{session}/{s}" for s in range(5)
    )
    assert daemon.stop() == 0


def test_cooldown_and_debounce_state_survive_a_restart(
    alerts_setup: Callable[..., Alerts], mosquitto: Mosquitto
) -> None:
    alerts = alerts_setup()
    daemon = alerts.start()
    session = new_session()
    start = time.time_ns()
    alerts.feed(door_event(session, start))
    wait_until(lambda: len(mqtt_events(mosquitto)) >= 1, 60, "first alert")
    assert daemon.stop() == 0
    again = alerts.start("alerts-again")
    # 20 s later in capture time: still inside the 60 s cooldown kept in SQLite.
    later = [
        result("door", seq, [PERSON], session=session, at_ns=start + 20 * SECOND + seq)
        for seq in range(10, 15)
    ]
    alerts.feed([*later, sentinel(session, 100)])
    wait_until(lambda: any(e["rule"] == "sentinel" for e in mqtt_events(mosquitto)), 60, "sentinel")
    assert [e["rule"] for e in mqtt_events(mosquitto)] == ["person-at-door", "sentinel"]
    assert again.stop() == 0


def test_report_renders_in_headless_chromium(
    alerts_setup: Callable[..., Alerts], mosquitto: Mosquitto, tmp_path: Path
) -> None:
    # Twenty minutes ago (max_alert_age_s off: this is about the report, not about staleness).
    alerts = alerts_setup(min_frames=1, max_alert_age_s=0)  # persons every 90 s alert
    daemon = alerts.start()
    session = new_session()
    start = time.time_ns() - 20 * 60 * SECOND
    # 40 frames, 30 s apart; five frames lost before Kafka after the 20th (a gap of 5).
    frames = [
        result(
            "door",
            i if i < 20 else i + 5,
            [PERSON] if i % 3 else [CAT],
            session=session,
            at_ns=start + i * 30 * SECOND,
        )
        for i in range(40)
    ]
    for i, frame in enumerate(frames):  # tracked: two persons one after the other, one cat
        for detection in frame.detections:
            detection.track_id = 3 if detection.label == "cat" else (1 if i < 20 else 2)
    alerts.feed(frames)
    wait_until(lambda: alerts.metric("vspd_alerts_results_total") >= 40, 60, "results")
    assert daemon.stop() == 0

    out = tmp_path / "report"
    since = (datetime.now().astimezone() - timedelta(hours=1)).isoformat(timespec="minutes")
    until = (datetime.now().astimezone() + timedelta(minutes=5)).isoformat(timespec="minutes")
    run = subprocess.run(
        [
            "vspd",
            "--config",
            str(alerts.config),
            "report",
            "--since",
            since,
            "--until",
            until,
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    (page,) = (out / "door").glob("custom-*.html")
    assert (out / "index.html").exists()
    assert page.with_suffix(".json").exists()
    assert "bucket_start,label,detections" in page.with_suffix(".csv").read_text()
    html = page.read_text()
    assert "http://" not in html.replace(
        'xmlns="http://www.w3.org/2000/svg"', ""
    )  # no network fetches

    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--no-first-run",
        f"--user-data-dir={tmp_path / 'chrome'}",
    ]
    dom = subprocess.run(
        ["chromium", *flags, "--dump-dom", page.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    assert dom.count('class="bar"') >= 10
    rows = re.findall(r'<tr class="count-row"><td>(\w+)</td><td class="n">(\d+)</td>', dom)
    assert dict(rows) == {"person": "26", "cat": "14"}
    # Persons at i % 3 != 0, 30 s apart, 60 s cooldown: alerts at i = 1, 4, ..., 37.
    assert dom.count("data:image/jpeg;base64,") == 13
    # Each thumbnail links to its full-size snapshot, relative to the page.
    links = re.findall(r'<a href="([^"]+)"><img alt="snapshot', dom)
    assert len(links) == 13
    target = (page.parent / links[0]).resolve()
    assert target.is_relative_to((alerts.state / "snapshots").resolve())  # the stored snapshot
    assert cv2.imread(str(target)) is not None
    assert "no data in this period" not in dom
    assert re.search(r'gaps in sequence[^<]*</th><td class="n bad">5</td>', dom)
    objects = re.findall(r'<tr class="object-row"><td>(\w+)</td><td class="n">(\d+)</td>', dom)
    assert dict(objects) == {"person": "2", "cat": "1"}

    screenshot = tmp_path / "report.png"
    subprocess.run(
        [
            "chromium",
            *flags,
            f"--screenshot={screenshot}",
            "--window-size=1000,1400",
            page.as_uri(),
        ],
        capture_output=True,
        timeout=120,
        check=True,
    )
    image = cv2.imread(str(screenshot))
    assert image is not None
    person_blue = np.all(
        np.abs(image.astype(int) - [180, 119, 31]) < 12, axis=2
    )  # PALETTE[1]? first label
    cat_orange = np.all(np.abs(image.astype(int) - [14, 127, 255]) < 12, axis=2)
    assert person_blue.sum() + cat_orange.sum() > 500, "the chart's bars are not on screen"


def test_ntfy_sink_posts_title_priority_and_snapshot(tmp_path: Path) -> None:
    from vspd.alerts.sinks.ntfy import NtfySink
    from vspd.alerts.store import EventRecord
    from vspd.config.model import AlertsConfig
    from vspd.config.model import NtfySink as NtfyConfig

    server = WebhookReceiver()  # a plain HTTP endpoint standing in for an ntfy topic URL
    try:
        sink = NtfySink(
            NtfyConfig(type="ntfy", name="phone", url=server.url, token="tk-1"),
            AlertsConfig(),
        )
        event = EventRecord(
            1,
            "door",
            "porch",
            "s",
            7,
            time.time_ns(),
            "person",
            0.9,
            2,
            "critical",
            "person on porch",
            None,
            [],
        )
        sink.deliver(event, b"\xff\xd8jpeg")
        (received,) = server.accepted
        assert received.headers["Title"] == "person on porch"
        assert received.headers["Priority"] == "5"
        assert received.headers["Authorization"] == "Bearer tk-1"
        assert received.headers["Message"] == "person on porch"
        assert received.body == b"\xff\xd8jpeg"
        assert received.headers["X-Vspd-Event-Id"] == "door/porch/s/7"
    finally:
        server.close()


def test_apprise_sink_without_the_package_is_a_clear_error() -> None:
    import importlib.util

    from vspd.alerts.errors import AlertsError
    from vspd.alerts.sinks import build_sink
    from vspd.config.model import AlertsConfig, AppriseSink

    assert importlib.util.find_spec("apprise") is None  # optional: not in the test environment
    config = AppriseSink(type="apprise", name="all", urls=["mailto://x"])
    with pytest.raises(AlertsError, match="the optional apprise package is not installed"):
        build_sink(config, AlertsConfig())


@pytest.mark.parametrize("form", ["seconds", "HTTP-date"])
def test_a_busy_receiver_is_retried_no_sooner_than_it_asked(
    webhook: WebhookReceiver, form: str
) -> None:
    from email.utils import formatdate

    from vspd.alerts.delivery import retry_delay_s
    from vspd.alerts.errors import DeliveryError
    from vspd.alerts.sinks.http import post
    from vspd.config.model import AlertsConfig

    webhook.mode = "busy"
    webhook.retry_after = "120" if form == "seconds" else formatdate(time.time() + 120, usegmt=True)
    signature = "sha256=" + hmac.new(webhook.secret, b"{}", hashlib.sha256).hexdigest()
    with pytest.raises(DeliveryError) as raised:
        post(webhook.url, b"{}", {"X-Vspd-Signature": signature}, 5.0)
    error = raised.value
    assert error.retriable
    assert error.retry_after_s is not None
    assert 100 <= error.retry_after_s <= 120  # an HTTP-date has one-second resolution
    # The receiver's wish wins over the short backoff of a first failure, within retry_max_s.
    assert retry_delay_s(AlertsConfig(retry_initial_s=1.0), 1, error) >= error.retry_after_s
    assert retry_delay_s(AlertsConfig(retry_initial_s=1.0, retry_max_s=30.0), 1, error) == 30.0
    assert retry_delay_s(AlertsConfig(retry_initial_s=1.0), 1, DeliveryError("x")) <= 1.2


def test_an_object_alerts_once_across_a_restart_and_a_second_object_alerts_too(
    alerts_setup: Callable[..., Alerts], mosquitto: Mosquitto
) -> None:
    alerts = alerts_setup(trigger="enter", min_frames=1)
    daemon = alerts.start()
    session = new_session()
    start = time.time_ns()

    def frame(seq: int, tracks: list[int]) -> Any:
        item = result(
            "door", seq, [PERSON] * len(tracks), session=session, at_ns=start + seq * SECOND
        )
        for detection, track in zip(item.detections, tracks, strict=True):
            detection.track_id = track
        return item

    alerts.feed([frame(seq, [11]) for seq in range(5)])
    wait_until(lambda: len(mqtt_events(mosquitto)) >= 1, 60, "the first object's alert")
    assert daemon.stop() == 0
    again = alerts.start("alerts-again")
    # The same person still there, and from seq 7 a second one; then the sentinel.
    alerts.feed([frame(seq, [11, 12] if seq >= 7 else [11]) for seq in range(5, 10)])
    alerts.feed([sentinel(session, 100)])
    wait_until(lambda: any(e["rule"] == "sentinel" for e in mqtt_events(mosquitto)), 60, "sentinel")
    entered = [e for e in mqtt_events(mosquitto) if e["rule"] == "person-at-door"]
    assert [(e["track_id"], e["seq"]) for e in entered] == [(11, 0), (12, 7)]
    assert entered[1]["event_id"] == f"person-at-door/door/{session}/7/12"
    assert again.stop() == 0


def test_line_crossings_per_direction_are_counted_as_they_happened(
    alerts_setup: Callable[..., Alerts], mosquitto: Mosquitto, tmp_path: Path
) -> None:
    from vspd.capture.sources.synthetic import SyntheticScene

    alerts = alerts_setup(
        trigger="cross", line=[[0.5, 0.0], [0.5, 1.0]], min_frames=1, max_alert_age_s=0
    )
    daemon = alerts.start()
    session = new_session()
    scene = SyntheticScene(640, 480, objects=3, speed=0.3, seed=4, noise=False)
    start = time.time_ns() - 10 * 60 * SECOND
    frames, truth = [], {"left": 0, "right": 0}
    previous: dict[int, float] = {}
    crossers: set[int] = set()
    for seq in range(600):  # two minutes at 5 fps
        boxes = scene.boxes(seq / 5)
        item = result("door", seq, [], session=session, at_ns=start + seq * SECOND // 5)
        for track, box in enumerate(boxes):
            detection = item.detections.add(label="person", confidence=0.9, track_id=100 + track)
            detection.box.x_min, detection.box.y_min, detection.box.x_max, detection.box.y_max = box
            # The truth, told independently: the bottom centre's side of x = 0.5.
            x = (box[0] + box[2]) / 2
            if track in previous and (previous[track] >= 0.5) != (x >= 0.5):
                truth["left" if x >= 0.5 else "right"] += 1
                crossers.add(100 + track)
            previous[track] = x
        frames.append(item)
    alerts.feed(frames)
    wait_until(lambda: alerts.metric("vspd_alerts_results_total") >= 600, 60, "results")
    wait_until(lambda: len(mqtt_events(mosquitto)) >= len(crossers), 60, "the alerts")
    assert daemon.stop() == 0
    assert truth["left"] > 2  # the scene does cross, both ways
    assert truth["right"] > 2
    out = tmp_path / "crossings"
    since = (datetime.now().astimezone() - timedelta(hours=1)).isoformat(timespec="minutes")
    until = (datetime.now().astimezone() + timedelta(minutes=5)).isoformat(timespec="minutes")
    run = subprocess.run(
        ["vspd", "--config", str(alerts.config), "report", "--since", since, "--until", until,
         "--out", str(out)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    (report,) = (out / "door").glob("custom-*.json")
    counted = {
        row["direction"]: row["count"] for row in json.loads(report.read_text())["crossings"]
    }
    assert counted == truth
    # Alerts: once per object that crossed, not once per crossing.
    crossed = [e for e in mqtt_events(mosquitto) if e["rule"] == "person-at-door"]
    assert sorted(e["track_id"] for e in crossed) == sorted(crossers)


def test_a_car_parked_for_two_hours_loiters_once_and_a_second_car_once_more(
    alerts_setup: Callable[..., Alerts], mosquitto: Mosquitto
) -> None:
    lot = [[[0.0, 0.5], [0.5, 0.5], [0.5, 1.0], [0.0, 1.0]]]
    alerts = alerts_setup(
        trigger="loiter",
        zones=lot,
        min_dwell_s=30.0,
        labels=["car"],
        min_frames=1,
        max_alert_age_s=0,  # two hours of capture time, replayed now
    )
    daemon = alerts.start()
    session = new_session()
    start = time.time_ns() - 3 * 3600 * SECOND
    frames = []
    for second in range(0, 2 * 3600, 2):  # two hours of capture time, a frame every 2 s
        parked = [("car", 0.9, (0.1, 0.6, 0.3, 0.8))]
        if second >= 3600:  # a second car arrives after an hour
            parked.append(("car", 0.9, (0.3, 0.6, 0.45, 0.85)))
        item = result("door", second // 2, parked, session=session, at_ns=start + second * SECOND)
        for detection, track in zip(item.detections, (501, 502), strict=False):
            detection.track_id = track
        frames.append(item)
    alerts.feed(frames)
    alerts.feed([sentinel(session, 10_000)])
    wait_until(
        lambda: any(e["rule"] == "sentinel" for e in mqtt_events(mosquitto)), 120, "sentinel"
    )
    loitered = [e for e in mqtt_events(mosquitto) if e["rule"] == "person-at-door"]
    assert [(e["track_id"], e["seq"]) for e in loitered] == [(501, 15), (502, 1815)]
    assert all(e["dwell_s"] >= 30.0 for e in loitered)
    assert daemon.stop() == 0
