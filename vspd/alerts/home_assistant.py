"""Home Assistant MQTT discovery: one device per camera, kept up to date.

For an MQTT sink with ``discovery = true``, each camera becomes a device with
- a ``binary_sensor`` per rule: on while the rule's condition holds (a frame
  matches its labels, confidence and zones), off after
  ``discovery_off_after_s`` without a match;
- a ``sensor`` per label the rules name: the objects of that label in the
  newest frame (distinct tracks where the broker tracks);
- an ``event`` entity that fires on every alert (``event_type`` = the rule);
  it and the ``camera`` entity (the newest alert's snapshot) are published by
  the sink's deliveries, so they are as reliable as every other alert.
Every entity is available while the daemon is: "online" retained on start,
"offline" as the connection's last will and on a clean stop.

Config messages are retained. Those published before are remembered in the
store; a camera or rule gone from the configuration has its config removed
(an empty retained message) at the next start, so Home Assistant forgets it.

The bridge has its own connection and thread: states never wait for a
delivery, and deliveries never wait for Home Assistant.
"""

from __future__ import annotations

import contextvars
import hashlib
import json
import re
import threading
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import structlog

from vspd import __version__
from vspd.alerts import store
from vspd.alerts.live import CameraView, LiveState
from vspd.alerts.rules import Rule
from vspd.alerts.sinks.mqtt import HaTopics, new_client
from vspd.config.model import MqttSink as MqttConfig

log = structlog.get_logger(__name__)

NS = 1_000_000_000
TICK_S = 1.0
ONLINE, OFFLINE = b"online", b"offline"
_NOT_ID = re.compile(r"[^A-Za-z0-9_-]")


def ha_id(text: str) -> str:
    """An id Home Assistant accepts in discovery topics and unique ids: [A-Za-z0-9_-]."""
    slug = _NOT_ID.sub("_", text)[:64]
    if slug == text:
        return slug
    return f"{slug}_{hashlib.sha256(text.encode('utf-8', 'surrogatepass')).hexdigest()[:8]}"


def camera_configs(
    sink: MqttConfig, camera: str, rules: list[Rule], labels: list[str]
) -> dict[str, dict[str, Any]]:
    """Discovery topic -> config payload, for every entity of one camera's device."""
    topics = HaTopics(sink)
    node = f"vspd_{ha_id(camera)}"
    common = {
        "availability_topic": topics.availability,
        "payload_available": ONLINE.decode(),
        "payload_not_available": OFFLINE.decode(),
        "device": {
            "identifiers": [node],
            "name": camera,
            "manufacturer": "vspd",
            "model": "vspd camera",
            "sw_version": __version__,
        },
        "origin": {"name": "vspd", "sw_version": __version__},
    }

    def topic(component: str, object_id: str) -> str:
        return f"{sink.discovery_prefix}/{component}/{node}/{object_id}/config"

    configs: dict[str, dict[str, Any]] = {}
    for rule in rules:
        object_id = f"rule_{ha_id(rule.config.name)}"
        configs[topic("binary_sensor", object_id)] = {
            **common,
            "name": rule.config.name,
            "unique_id": f"{node}_{object_id}",
            "state_topic": topics.rule(camera, rule.config.name),
            "payload_on": "ON",
            "payload_off": "OFF",
        }
    for label in labels:
        object_id = f"objects_{ha_id(label)}"
        configs[topic("sensor", object_id)] = {
            **common,
            "name": f"{label} count",
            "unique_id": f"{node}_{object_id}",
            "state_topic": topics.objects(camera, label),
            "state_class": "measurement",
            "icon": "mdi:counter",
        }
    if rules:
        configs[topic("event", "alert")] = {
            **common,
            "name": "Alert",
            "unique_id": f"{node}_alert",
            "state_topic": topics.event(camera),
            "event_types": [rule.config.name for rule in rules],
        }
    configs[topic("camera", "snapshot")] = {
        **common,
        "name": "Snapshot",
        "unique_id": f"{node}_snapshot",
        "topic": topics.snapshot(camera),
    }
    return configs


def camera_states(
    sink: MqttConfig, view: CameraView, rules: list[Rule], labels: list[str], now_ns: int
) -> dict[str, bytes]:
    """State topic -> payload for one camera now."""
    topics = HaTopics(sink)
    off_after_ns = int(sink.discovery_off_after_s * NS)
    # The camera's clock now, estimated from its newest frame: a camera whose
    # clock is off does not keep its sensors on (or off) for ever.
    camera_now_ns = view.last_capture_ns + (now_ns - view.received_ns)
    silent = now_ns - view.received_ns > off_after_ns
    states: dict[str, bytes] = {}
    for rule in rules:
        matched = view.rules_matched_ns.get(rule.config.name)
        on = matched is not None and camera_now_ns - matched < off_after_ns
        states[topics.rule(view.camera, rule.config.name)] = b"ON" if on else b"OFF"
    for label in labels:
        count = 0 if silent else view.objects.get(label, 0)
        states[topics.objects(view.camera, label)] = str(count).encode()
    return states


class HomeAssistantBridge:
    def __init__(
        self,
        sink: MqttConfig,
        rules: list[Rule],
        configured_cameras: list[str],
        live: LiveState,
        database: Path,
    ) -> None:
        self.sink = sink
        self._rules = rules
        self._configured = configured_cameras
        self._live = live
        self._database = database
        self._topics = HaTopics(sink)
        self._stopping = threading.Event()
        self._fresh_connection = threading.Event()
        self._connected = threading.Event()
        self._published: dict[str, bytes] = {}  # state topic -> what it holds
        self._devices: set[str] = set()
        self._thread: threading.Thread | None = None
        self._client: mqtt.Client | None = None

    def start(self) -> None:
        client = new_client(self.sink, f"vspd-alerts-{self.sink.name}-ha")
        client.will_set(self._topics.availability, OFFLINE, qos=1, retain=True)
        client.on_connect = lambda _c, _u, _f, reason, _p: self._on_connect(reason)
        client.on_disconnect = lambda *_args: self._connected.clear()
        client.reconnect_delay_set(1, 30)
        # Connects, and reconnects, on paho's thread: a broker that is down at
        # start only delays Home Assistant, never the daemon.
        client.connect_async(self.sink.host, self.sink.port, keepalive=30)
        client.loop_start()
        self._client = client
        context = contextvars.copy_context()
        self._thread = threading.Thread(
            target=context.run, args=(self._run,), name=f"ha-{self.sink.name}", daemon=True
        )
        self._thread.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        self._stopping.set()
        with self._live.changed:
            self._live.changed.notify_all()
        if self._thread is not None:
            self._thread.join(timeout_s)
        client = self._client
        if client is not None:
            if self._connected.is_set():
                info = client.publish(self._topics.availability, OFFLINE, qos=1, retain=True)
                info.wait_for_publish(timeout_s)
            client.disconnect()
            client.loop_stop()
            self._client = None

    def _on_connect(self, reason: object) -> None:
        if getattr(reason, "is_failure", False):
            log.warning(
                "Home Assistant discovery: MQTT refused", sink=self.sink.name, reason=str(reason)
            )
            return
        self._connected.set()
        self._fresh_connection.set()

    def _run(self) -> None:
        connection = store.connect(self._database)
        try:
            while not self._stopping.is_set():
                try:
                    self._tick(connection)
                except Exception:  # Home Assistant must not stop the daemon
                    log.exception("Home Assistant discovery failed; retrying", sink=self.sink.name)
                    self._fresh_connection.set()
                    self._stopping.wait(5)
                with self._live.changed:
                    self._live.changed.wait(TICK_S)
        finally:
            connection.close()

    def _tick(self, connection: Any) -> None:
        if not self._connected.is_set():
            return
        views = {view.camera: view for view in self._live.cameras()}
        if self._fresh_connection.is_set():
            self._fresh_connection.clear()
            self._publish(self._topics.availability, ONLINE)
            self._published.clear()
            cameras = set(self._configured) or set(store.cameras_seen(connection)) | set(views)
            self._announce(connection, cameras, replace=True)
        elif not self._configured:
            new = set(views) - self._devices
            if new:
                self._announce(connection, new, replace=False)
        now_ns = time.time_ns()
        for camera in sorted(self._devices):
            # A device not seen since the start is off, with nothing present.
            view = views.get(camera) or CameraView(camera, 0, 0, 0, 0.0, 0, {}, {}, [])
            rules, labels = self._entities(camera)
            for topic, payload in camera_states(self.sink, view, rules, labels, now_ns).items():
                if self._published.get(topic) != payload:
                    self._publish(topic, payload)
                    self._published[topic] = payload

    def _announce(self, connection: Any, cameras: set[str], replace: bool) -> None:
        """Publish the cameras' configs; with `replace`, remove every other one published before."""
        configs: dict[str, dict[str, Any]] = {}
        for camera in sorted(cameras):
            rules, labels = self._entities(camera)
            configs.update(camera_configs(self.sink, camera, rules, labels))
        before = store.discovery_topics(connection, self.sink.name)
        removed = before - set(configs) if replace else set()
        for topic in sorted(removed):
            self._publish(topic, b"")
        for topic, config in configs.items():
            self._publish(topic, json.dumps(config, allow_nan=False).encode())
        kept = set(configs) if replace else before | set(configs)
        store.save_discovery_topics(connection, self.sink.name, kept)
        self._devices = cameras if replace else self._devices | cameras
        log.info(
            "Home Assistant discovery published",
            sink=self.sink.name,
            cameras=sorted(cameras)[:20],
            entities=len(configs),
            removed=len(removed),
            prefix=self.sink.discovery_prefix,
        )

    def _entities(self, camera: str) -> tuple[list[Rule], list[str]]:
        rules = [rule for rule in self._rules if rule.applies_to(camera)]
        labels = sorted({label for rule in rules for label in rule.config.labels})
        return rules, labels

    def _publish(self, topic: str, payload: bytes) -> None:
        assert self._client is not None  # noqa: S101 - started
        self._client.publish(topic, payload, qos=1, retain=True)
