"""Seeing it live: Home Assistant MQTT discovery against mosquitto, the live page in Chromium.

Real Kafka, the real alerts daemon, Debian's mosquitto, a real headless
Chromium driven over the DevTools protocol.
"""

from __future__ import annotations

import json
import re
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.browser import Chromium
from tests.support.kafka import produce, unique_name
from tests.support.peers import Mosquitto
from tests.support.processes import DaemonProcess, wait_until
from tests.support.results import SECOND, messages, new_session, result
from tests.support.tansu import free_port
from vspd.alerts.home_assistant import camera_states, ha_id
from vspd.alerts.live import LiveState, objects_present
from vspd.alerts.rules import build_rules
from vspd.config.model import MqttSink, RuleConfig
from vspd.v1 import result_pb2

PERSON = ("person", 0.9, (0.3, 0.2, 0.6, 0.9))
CAR = ("car", 0.8, (0.1, 0.5, 0.4, 0.9))

# Home Assistant's MQTT discovery schema, per platform (home-assistant.io/integrations/
# <platform>.mqtt): what each config must have, and every option vspd may send.
HA_COMMON = {
    "name",
    "unique_id",
    "device",
    "origin",
    "availability_topic",
    "payload_available",
    "payload_not_available",
    "icon",
}
HA_PLATFORMS = {
    "binary_sensor": ({"state_topic"}, {"payload_on", "payload_off", "device_class"}),
    "sensor": ({"state_topic"}, {"state_class", "unit_of_measurement", "device_class"}),
    "event": ({"state_topic", "event_types"}, {"device_class"}),
    "camera": ({"topic"}, {"image_encoding"}),
}
DISCOVERY_TOPIC = re.compile(
    r"^homeassistant/(binary_sensor|sensor|event|camera)/[A-Za-z0-9_-]+/[A-Za-z0-9_-]+/config$"
)


def check_discovery_config(topic: str, config: dict[str, Any]) -> str:
    """Fails unless the config is one Home Assistant accepts; returns the platform."""
    match = DISCOVERY_TOPIC.match(topic)
    assert match, f"not a discovery topic: {topic}"
    platform = match.group(1)
    required, optional = HA_PLATFORMS[platform]
    assert required <= set(config), f"{topic}: missing {required - set(config)}"
    unknown = set(config) - required - optional - HA_COMMON
    assert not unknown, f"{topic}: options Home Assistant does not know: {unknown}"
    assert isinstance(config["unique_id"], str)
    assert config["unique_id"]
    device = config["device"]
    assert device["identifiers"]
    assert all(isinstance(i, str) for i in device["identifiers"])
    assert device["name"]
    assert config["origin"]["name"] == "vspd"
    for key in ("state_topic", "topic", "availability_topic"):
        if key in config:
            assert not set(config[key]) & {"+", "#", "\0"}, f"{topic}: {key} is not a topic"
    if platform == "event":
        assert config["event_types"]
        assert all(isinstance(t, str) for t in config["event_types"])
    return platform


def state_topics(configs: dict[str, dict[str, Any]]) -> set[str]:
    return {c.get("state_topic") or c["topic"] for c in configs.values()}


def discovery(retained: dict[str, bytes]) -> dict[str, dict[str, Any]]:
    return {
        topic: json.loads(payload)
        for topic, payload in retained.items()
        if topic.startswith("homeassistant/") and payload
    }


def received(mosquitto: Mosquitto, topic: str) -> list[bytes]:
    return [payload for name, payload in list(mosquitto.messages) if name == topic]


@pytest.fixture
def discovery_setup(
    fresh_topics: Callable[..., dict[str, str]],
    write_config: Callable[..., Path],
    mosquitto: Mosquitto,
) -> Callable[..., Path]:
    topics = fresh_topics(partitions=1)
    group = unique_name("alerts")  # a group of its own: this test kills a member of it

    def configure(cameras: list[str], vehicles_rule: bool) -> Path:
        rules: list[dict[str, Any]] = [
            {
                "name": "person-at-door",
                "cameras": ["door"],
                "labels": ["person"],
                "min_frames": 1,
                "cooldown_s": 0.0,
            }
        ]
        if vehicles_rule:
            rules.append({"name": "vehicles", "labels": ["car"], "min_frames": 1})
        return write_config(
            topics=topics,
            cameras=[{"id": camera, "source": "file:/dev/null"} for camera in cameras],
            alerts={
                "group_id": group,
                "rules": rules,
                "sinks": [
                    {
                        "type": "mqtt",
                        "name": "home",
                        "host": "127.0.0.1",
                        "port": mosquitto.port,
                        "discovery": True,
                        "discovery_off_after_s": 1.0,
                    }
                ],
            },
        )

    configure.topics = topics  # type: ignore[attr-defined]
    return configure


def test_home_assistant_discovers_a_device_per_camera_and_forgets_what_left(
    discovery_setup: Callable[..., Path],
    daemons: Callable[..., DaemonProcess],
    bootstrap: str,
    mosquitto: Mosquitto,
) -> None:
    topics: dict[str, str] = discovery_setup.topics  # type: ignore[attr-defined]
    config = discovery_setup(["door", "yard"], vehicles_rule=True)
    daemon = daemons("--config", str(config), "alerts")
    daemon.wait_for_log("Home Assistant discovery published")
    wait_until(lambda: mosquitto.retained().get("vspd/_ha/availability") == b"online", 30, "birth")
    configs = discovery(mosquitto.retained())
    platforms = sorted(check_discovery_config(t, c) for t, c in configs.items())
    # door: two rules, two labels, the alert event, the snapshot; yard: one of each.
    assert platforms == sorted(
        ["binary_sensor"] * 3 + ["sensor"] * 3 + ["event"] * 2 + ["camera"] * 2
    )
    assert len({c["unique_id"] for c in configs.values()}) == len(configs)
    devices = {c["device"]["name"] for c in configs.values()}
    assert devices == {"door", "yard"}

    session = new_session()
    feed = [result("door", 1, [PERSON], session=session), result("yard", 1, [CAR], session=session)]
    feed[0].detections[0].track_id = 7
    produce(bootstrap, topics["results_topic"], messages(feed))
    door_rule = "vspd/_ha/door/rule/person-at-door"
    wait_until(lambda: b"ON" in received(mosquitto, door_rule), 60, "the rule's sensor on")
    wait_until(lambda: b"1" in received(mosquitto, "vspd/_ha/door/objects/person"), 30, "count")
    # Off after discovery_off_after_s without a matching frame, and nobody present any more.
    wait_until(lambda: received(mosquitto, door_rule)[-1:] == [b"OFF"], 30, "the sensor off")
    wait_until(
        lambda: received(mosquitto, "vspd/_ha/door/objects/person")[-1:] == [b"0"], 30, "no one"
    )
    wait_until(lambda: received(mosquitto, "vspd/_ha/yard/event"), 60, "the yard's alert")
    door_events = [json.loads(p) for p in received(mosquitto, "vspd/_ha/door/event")]
    assert [e["event_type"] for e in door_events] == ["person-at-door"]
    assert door_events[0]["detections"][0]["track_id"] == 7
    event_config = configs["homeassistant/event/vspd_door/alert/config"]
    assert door_events[0]["event_type"] in event_config["event_types"]
    wait_until(lambda: received(mosquitto, "vspd/_ha/door/snapshot"), 30, "the snapshot")
    assert received(mosquitto, "vspd/_ha/door/snapshot")[-1].startswith(b"\xff\xd8")  # a JPEG
    # Every topic an entity reads has really received a state.
    silent = {t for t in state_topics(configs) if not received(mosquitto, t)}
    assert not silent, f"entities whose topic got nothing: {silent}"

    # Killed: the broker publishes the last will, and Home Assistant shows it unavailable.
    daemon.kill9()
    wait_until(lambda: b"offline" in received(mosquitto, "vspd/_ha/availability"), 30, "will")

    # The yard camera and the vehicles rule leave the configuration: their entities go.
    config = discovery_setup(["door"], vehicles_rule=False)
    mosquitto.messages.clear()
    daemon = daemons("--config", str(config), "alerts", name="alerts-again")
    wait_until(lambda: b"online" in received(mosquitto, "vspd/_ha/availability"), 60, "birth")
    wait_until(lambda: len(discovery(mosquitto.retained())) == 4, 30, "the removals")
    left = discovery(mosquitto.retained())
    assert {c["device"]["name"] for c in left.values()} == {"door"}
    assert not any("vehicles" in json.dumps(c) for c in left.values())
    assert daemon.stop() == 0
    assert mosquitto.retained()["vspd/_ha/availability"] == b"offline"


# -- the live page -------------------------------------------------------------------
HOSTILE = '<img src=x onerror="window.pwned=1">'


class Feeder:
    """Results of the door camera every 0.2 s until stopped: a camera that streams."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.bootstrap, self.topic = bootstrap, topic
        self.session = new_session()
        self.seq = 0
        self.extra: list[result_pb2.Result] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> Feeder:
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            self.seq += 1
            item = result("door", self.seq, [PERSON], session=self.session)
            item.detections[0].track_id = 3
            batch = [item, *self.extra]
            self.extra = []
            produce(self.bootstrap, self.topic, messages(batch))
            self._stop.wait(0.2)

    def hostile(self) -> None:
        """One result with a hostile label, sent with the next batch (a session of its own)."""
        self.extra = [result("door", 1, [(HOSTILE, 0.9, (0.1, 0.1, 0.2, 0.2))], new_session())]

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Chromium]:
    chromium = Chromium(tmp_path / "chromium")
    yield chromium
    chromium.close()


def get(url: str, token: str | None = None) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url)  # noqa: S310 - http on loopback
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - loopback
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def test_live_page_updates_by_itself_shows_stale_cameras_and_escapes_everything(
    fresh_topics: Callable[..., dict[str, str]],
    write_config: Callable[..., Path],
    daemons: Callable[..., DaemonProcess],
    bootstrap: str,
    browser: Chromium,
    tmp_path: Path,
) -> None:
    topics = fresh_topics(partitions=1)
    token = "a-long-web-token"
    (tmp_path / "web-token").write_text(token)
    port = free_port()
    config = write_config(
        topics=topics,
        web={
            "enabled": True,
            "port": port,
            "token": f"file:{tmp_path / 'web-token'}",
            "stale_after_s": 2.0,
            "health_interval_s": 1.0,
        },
        alerts={
            "group_id": unique_name("alerts"),
            "rules": [
                {"name": "person", "labels": ["person"], "min_frames": 1, "cooldown_s": 3600.0},
                {
                    "name": "odd-label",
                    "labels": [HOSTILE],
                    "min_frames": 1,
                    "message": "{{ label }} on {{ camera }}",
                },
            ],
            "sinks": [{"type": "log", "name": "journal"}],
        },
    )
    feeder = Feeder(bootstrap, topics["results_topic"]).start()
    try:
        daemon = daemons("--config", str(config), "alerts")
        daemon.wait_for_log('"event": "live page"')
        base = f"http://127.0.0.1:{port}"
        status, _headers, body = get(f"{base}/api/live")
        assert status == 401
        assert b"Bearer" in body
        assert token.encode() not in body
        status, headers, _body = get(f"{base}/", token)
        assert status == 200
        assert "script-src 'self'" in headers["Content-Security-Policy"]
        assert "default-src 'none'" in headers["Content-Security-Policy"]
        assert get(f"{base}/snapshots/../../../etc/passwd", token)[0] == 404
        assert get(f"{base}/snapshots/%2e%2e/%2e%2e/etc/hostname", token)[0] == 404

        browser.navigate(f"{base}/?token={token}")  # sets the cookie, then the page
        browser.wait_for("document.querySelectorAll('.camera').length === 1", 60, "a camera")
        assert browser.evaluate("location.search") == ""  # the token left the address bar
        browser.wait_for(
            "document.querySelector('.camera').dataset.state === 'live'", 30, "the camera live"
        )
        browser.wait_for(
            "document.querySelector('.camera .frame').naturalWidth > 0", 30, "the newest frame"
        )
        browser.wait_for("document.querySelectorAll('.alert').length === 1", 30, "the alert")
        browser.wait_for(
            "document.querySelector('.alert img') && "
            "document.querySelector('.alert img').naturalWidth > 0",
            30,
            "the alert's snapshot",
        )
        facts = browser.evaluate("document.querySelector('.camera .facts').textContent")
        assert re.search(r"last result [\d.]+ s ago · [\d.]+ fps · 0 gaps · seq \d+", facts), facts
        assert browser.evaluate("document.querySelector('.camera .objects').textContent") == (
            "now: 1 person"
        )
        browser.wait_for(
            "document.getElementById('health').dataset.read === 'yes'", 30, "the health"
        )
        health = browser.evaluate("document.getElementById('health').textContent")
        assert "dead letters in the last hour 0" in health, health

        # A new alert appears without a reload; its label and message stay text.
        browser.evaluate("window.vspdMarker = 'same page'")
        feeder.hostile()
        browser.wait_for("document.querySelectorAll('.alert').length === 2", 60, "the new alert")
        assert browser.evaluate("window.vspdMarker") == "same page"
        assert browser.evaluate("window.pwned === undefined")
        assert browser.evaluate("document.querySelectorAll('img[src=\"x\"]').length") == 0
        newest = browser.evaluate("document.querySelector('.alert .what').textContent")
        assert newest == f"{HOSTILE} on door"

        # The camera stops: shown as stale, by itself.
        feeder.stop()
        browser.wait_for("document.querySelector('.camera').dataset.state === 'stale'", 60, "stale")
        assert browser.evaluate("document.querySelector('.camera .state').textContent") == "STALE"
        assert daemon.stop() == 0
        assert token not in daemon.log()
    finally:
        feeder.stop()


def test_live_page_port_taken_does_not_stop_alerts(
    fresh_topics: Callable[..., dict[str, str]],
    write_config: Callable[..., Path],
    daemons: Callable[..., DaemonProcess],
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        config = write_config(
            topics=fresh_topics(partitions=1),
            web={"enabled": True, "port": taken.getsockname()[1]},
            alerts={"group_id": unique_name("alerts")},
        )
        daemon = daemons("--config", str(config), "alerts")
        daemon.wait_for_log("live page unavailable")
        daemon.wait_for_log('"event": "serving"')
        assert daemon.stop() == 0


# -- the pieces alone ------------------------------------------------------------------
def test_objects_present_counts_tracks_where_tracked() -> None:
    frame = result("door", 1, [PERSON, PERSON, PERSON, CAR])
    frame.detections[0].track_id = 4
    frame.detections[1].track_id = 4  # one object seen twice (two boxes, one track)
    frame.detections[2].track_id = 9
    assert objects_present(frame) == {"person": 2, "car": 1}


def test_rule_sensor_follows_the_cameras_clock_not_ours() -> None:
    sink = MqttSink(type="mqtt", name="home", host="127.0.0.1", discovery=True,
                    discovery_off_after_s=30.0)  # fmt: skip
    rules = build_rules(
        [RuleConfig(name="person-at-door", labels=["person"]), RuleConfig(name="cars")]
    )
    now = time.time_ns()
    behind = now - 3600 * SECOND  # the camera's clock is an hour behind
    live = LiveState()
    live.observe(result("door", 1, [PERSON], at_ns=behind), 0, ["person-at-door"])
    (view,) = live.cameras()
    states = camera_states(sink, view, rules, ["person"], now)
    assert states["vspd/_ha/door/rule/person-at-door"] == b"ON"
    assert states["vspd/_ha/door/rule/cars"] == b"OFF"
    assert states["vspd/_ha/door/objects/person"] == b"1"
    later = camera_states(sink, view, rules, ["person"], now + 31 * SECOND)
    assert later["vspd/_ha/door/rule/person-at-door"] == b"OFF"
    assert later["vspd/_ha/door/objects/person"] == b"0"  # silent: nobody is known present


def test_live_state_is_bounded_and_ignores_older_results() -> None:
    live = LiveState(max_cameras=8)
    for index in range(20):
        live.observe(result(f"cam{index:02d}", 1), 0, [])
    names = [view.camera for view in live.cameras()]
    assert len(names) == 8
    assert "cam19" in names
    now = time.time_ns()
    live.observe(result("cam19", 5, [PERSON], at_ns=now), 0, [])
    live.observe(result("cam19", 4, [CAR, CAR], at_ns=now - SECOND), 0, [])  # a replay
    (view,) = [v for v in live.cameras() if v.camera == "cam19"]
    assert view.seq == 5
    assert view.objects == {"person": 1}


def test_home_assistant_ids_never_collide_or_break_topics() -> None:
    assert ha_id("door") == "door"
    assert ha_id("front.door") != ha_id("front_door")
    assert re.fullmatch(r"[A-Za-z0-9_-]+", ha_id("a/b+#c"))
