"""MQTT (paho-mqtt 2.x): QoS 1, a topic per camera and rule, payloads Home Assistant can use.

Topics under `topic_prefix` (default "vspd"):
  vspd/<camera>/<rule>           JSON event (event_id, label, confidence, message, time, ...)
  vspd/<camera>/<rule>/snapshot  the snapshot JPEG (an MQTT camera entity can show it)
and with `discovery = true` those of Home Assistant's entities (`HaTopics`),
below vspd/_ha/ (no camera id starts with "_": they cannot collide).
"""

from __future__ import annotations

import ssl
import threading

import paho.mqtt.client as mqtt

from vspd.alerts.errors import DeliveryError
from vspd.alerts.sinks.payload import clip_json, event_json
from vspd.alerts.store import ClipRecord, EventRecord
from vspd.config.model import AlertsConfig
from vspd.config.model import MqttSink as MqttConfig
from vspd.runtime.paths import safe_name


class HaTopics:
    """Where the Home Assistant entities of one sink read their states."""

    def __init__(self, config: MqttConfig) -> None:
        self.base = f"{config.topic_prefix}/_ha"
        self.availability = f"{self.base}/availability"

    def rule(self, camera: str, rule: str) -> str:
        return f"{self.base}/{camera}/rule/{rule}"

    def objects(self, camera: str, label: str) -> str:
        return f"{self.base}/{camera}/objects/{safe_name(label)}"

    def event(self, camera: str) -> str:
        return f"{self.base}/{camera}/event"

    def snapshot(self, camera: str) -> str:
        return f"{self.base}/{camera}/snapshot"


def new_client(config: MqttConfig, client_id: str) -> mqtt.Client:
    """A client with the sink's credentials and TLS, not connected yet."""
    client = mqtt.Client(
        callback_api_version=mqtt.CallbackAPIVersion.VERSION2,
        client_id=client_id,
        clean_session=False,  # QoS 1 messages survive a reconnect
    )
    if config.username:
        password = config.password.get_secret_value() if config.password else None
        client.username_pw_set(config.username, password)
    if config.tls:
        context = ssl.create_default_context(cafile=config.ca_file or None)
        client.tls_set_context(context)
    return client


class MqttSink:
    def __init__(self, config: MqttConfig, alerts: AlertsConfig) -> None:
        self.name = config.name
        self._config = config
        self._alerts = alerts
        self._client: mqtt.Client | None = None
        self._connected = threading.Event()

    def _connect(self) -> mqtt.Client:
        if self._client is not None and self._connected.is_set():
            return self._client
        self.close()
        config = self._config
        client = new_client(config, f"vspd-alerts-{config.name}")
        client.on_connect = lambda _c, _u, _f, reason, _p: self._on_connect(reason)
        client.on_disconnect = lambda *_args: self._connected.clear()
        try:
            client.connect(config.host, config.port, keepalive=30)
        except OSError as exc:
            raise DeliveryError(f"MQTT {config.host}:{config.port}: {exc}") from None
        client.loop_start()
        self._client = client
        if not self._connected.wait(config.timeout_s):
            self.close()
            raise DeliveryError(
                f"MQTT {config.host}:{config.port}: not connected within {config.timeout_s}s"
            )
        return client

    def _on_connect(self, reason: object) -> None:
        if not getattr(reason, "is_failure", False):
            self._connected.set()

    def deliver_clip(self, event: EventRecord, clip: ClipRecord, video: bytes | None) -> None:
        """The clip's description (its link, not the video) on <prefix>/<camera>/<rule>/clip."""
        topic = f"{self._config.topic_prefix}/{event.camera}/{event.rule}/clip"
        body = clip_json(event, clip, self._alerts).encode()
        self._publish(self._connect(), [(topic, body, self._config.retain)])

    def deliver(self, event: EventRecord, snapshot: bytes | None) -> None:
        client = self._connect()
        topic = f"{self._config.topic_prefix}/{event.camera}/{event.rule}"
        payload = event_json(event, self._alerts)
        messages = [(topic, payload.encode(), self._config.retain)]
        if snapshot is not None:
            messages.append((f"{topic}/snapshot", snapshot, self._config.retain))
        if self._config.discovery:  # the camera's event entity, and its camera entity
            ha = HaTopics(self._config)
            typed = event_json(event, self._alerts, extra={"event_type": event.rule})
            messages.append((ha.event(event.camera), typed.encode(), False))
            if snapshot is not None:
                messages.append((ha.snapshot(event.camera), snapshot, True))
        self._publish(client, messages)

    def _publish(self, client: mqtt.Client, messages: list[tuple[str, bytes, bool]]) -> None:
        for name, body, retain in messages:
            info = client.publish(name, body, qos=1, retain=retain)
            try:
                info.wait_for_publish(self._config.timeout_s)
            except (RuntimeError, ValueError) as exc:
                self.close()
                raise DeliveryError(f"MQTT publish to {name}: {exc}") from None
            if not info.is_published():
                self.close()
                raise DeliveryError(
                    f"MQTT publish to {name} not acknowledged within {self._config.timeout_s}s"
                )

    def close(self) -> None:
        if self._client is not None:
            self._client.loop_stop()
            self._client.disconnect()
            self._client = None
        self._connected.clear()
