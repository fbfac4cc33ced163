"""MQTT (paho-mqtt 2.x): QoS 1, a topic per camera and rule, payloads Home Assistant can use.

Topics under `topic_prefix` (default "vspd"):
  vspd/<camera>/<rule>           JSON event (event_id, label, confidence, message, time, ...)
  vspd/<camera>/<rule>/snapshot  the snapshot JPEG (an MQTT camera entity can show it)
"""

from __future__ import annotations

import ssl
import threading

import paho.mqtt.client as mqtt

from vspd.alerts.errors import DeliveryError
from vspd.alerts.sinks.payload import event_json
from vspd.alerts.store import EventRecord
from vspd.config.model import AlertsConfig
from vspd.config.model import MqttSink as MqttConfig


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
        client = mqtt.Client(
            callback_api_version=mqtt.CallbackAPIVersion.VERSION2,
            client_id=f"vspd-alerts-{config.name}",
            clean_session=False,  # QoS 1 messages survive a reconnect
        )
        if config.username:
            password = config.password.get_secret_value() if config.password else None
            client.username_pw_set(config.username, password)
        if config.tls:
            context = ssl.create_default_context(cafile=config.ca_file or None)
            client.tls_set_context(context)
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

    def deliver(self, event: EventRecord, snapshot: bytes | None) -> None:
        client = self._connect()
        topic = f"{self._config.topic_prefix}/{event.camera}/{event.rule}"
        payload = event_json(event, self._alerts)
        messages = [(topic, payload.encode())]
        if snapshot is not None:
            messages.append((f"{topic}/snapshot", snapshot))
        for name, body in messages:
            info = client.publish(name, body, qos=1, retain=self._config.retain)
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
