"""Real peers for the alert sinks: an HTTP receiver, mosquitto, an SMTP server with STARTTLS."""

from __future__ import annotations

import hashlib
import hmac
import json
import shutil
import ssl
import subprocess
import threading
import time
import uuid
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt

from tests.support.tansu import free_port


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)


class WebhookReceiver:
    """Accepts POSTs; `mode` is "ok", "fail" (HTTP 500), "slow" (answers after the sender gave
    up), or "busy" (HTTP 429 with `Retry-After: retry_after`).

    Strict by default: every accepted request counts, so a sender-side duplicate
    shows. `idempotent=True` behaves like a production receiver: a repeat of an
    X-Vspd-Event-Id it already has is answered 204 and counted in `repeats`.
    """

    def __init__(self, secret: bytes = b"", idempotent: bool = False) -> None:
        self.secret = secret
        self.idempotent = idempotent
        self.mode = "ok"
        self.retry_after = "3600"
        self.accepted: list[Received] = []
        self.repeats = 0
        self.refused = 0
        self.bad_signatures = 0
        self.port = free_port()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                if receiver.secret:
                    expected = (
                        "sha256=" + hmac.new(receiver.secret, body, hashlib.sha256).hexdigest()
                    )
                    if not hmac.compare_digest(expected, self.headers.get("X-Vspd-Signature", "")):
                        receiver.bad_signatures += 1
                        self.send_response(401)
                        self.end_headers()
                        return
                mode = receiver.mode  # decided on arrival
                if mode == "slow":
                    time.sleep(3)
                if mode == "busy":
                    receiver.refused += 1
                    self.send_response(429)
                    self.send_header("Retry-After", receiver.retry_after)
                    self.end_headers()
                    return
                if mode != "ok":
                    receiver.refused += 1
                    self.send_response(500)
                    self.end_headers()
                    return
                delivery = (
                    self.headers.get("X-Vspd-Event-Id", ""),
                    self.headers.get("X-Vspd-Delivery", ""),
                )
                if receiver.idempotent and delivery in {
                    (r.headers.get("X-Vspd-Event-Id"), r.headers.get("X-Vspd-Delivery"))
                    for r in receiver.accepted
                }:
                    receiver.repeats += 1
                else:
                    receiver.accepted.append(Received(dict(self.headers), body))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *_args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def event_ids(self) -> list[str]:
        """The alerts received (not their clips' follow-ups)."""
        return [r.json["event_id"] for r in self.accepted if "type" not in r.json]

    def clips(self) -> list[dict[str, Any]]:
        """The clip_ready follow-ups received."""
        return [r.json for r in self.accepted if r.json.get("type") == "clip_ready"]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class Mosquitto:
    """Debian's mosquitto on loopback, and a subscriber that records everything."""

    def __init__(self, directory: Path) -> None:
        binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        self.port = free_port()
        conf = directory / "mosquitto.conf"
        conf.write_text(
            f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
        )
        self.log = directory / "mosquitto.log"
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                [binary, "-c", str(conf)], stdout=log, stderr=subprocess.STDOUT
            )
        self.messages: list[tuple[str, bytes]] = []
        self._connected = threading.Event()
        client = mqtt.Client(
            callback_api_version=mqtt.CallbackAPIVersion.VERSION2, client_id="test-subscriber"
        )
        client.on_connect = lambda c, *_a: (c.subscribe("#", qos=1), self._connected.set())
        client.on_message = lambda _c, _u, m: self.messages.append((m.topic, bytes(m.payload)))
        deadline = time.monotonic() + 30
        while True:
            try:
                client.connect("127.0.0.1", self.port)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        client.loop_start()
        assert self._connected.wait(30)
        self.client = client

    def retained(self) -> dict[str, bytes]:
        """Every retained message now: what a client connecting now is given.

        A marker published after the subscription is acknowledged arrives after
        the retained messages, so their end is an event, not a timeout.
        """
        marker = f"test/marker/{uuid.uuid4()}"
        found: dict[str, bytes] = {}
        done = threading.Event()
        client = mqtt.Client(callback_api_version=mqtt.CallbackAPIVersion.VERSION2)

        def on_message(_c: object, _u: object, message: mqtt.MQTTMessage) -> None:
            if message.topic == marker:
                done.set()
            elif message.retain:
                found[message.topic] = bytes(message.payload)

        client.on_message = on_message
        client.on_subscribe = lambda c, *_a: c.publish(marker, b"end", qos=1)
        client.on_connect = lambda c, *_a: c.subscribe("#", qos=1)
        client.connect("127.0.0.1", self.port)
        client.loop_start()
        try:
            assert done.wait(30), "the marker never came back"
        finally:
            client.loop_stop()
            client.disconnect()
        return found

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()
        self.process.terminate()
        self.process.wait(10)


@dataclass
class SmtpServer:
    """aiosmtpd with STARTTLS required before AUTH, like a real submission server."""

    directory: Path
    username: str = "vspd"
    password: str = "s3cret-smtp"
    messages: list[Message] = field(default_factory=list)

    def __post_init__(self) -> None:
        from aiosmtpd.controller import Controller
        from aiosmtpd.smtp import AuthResult, LoginPassword

        self.cert = self.directory / "smtp-cert.pem"
        key = self.directory / "smtp-key.pem"
        subprocess.run(
            [
                "openssl",
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "1",
                "-subj",
                "/CN=localhost",
                "-addext",
                "subjectAltName=DNS:localhost,IP:127.0.0.1",
                "-keyout",
                str(key),
                "-out",
                str(self.cert),
            ],
            check=True,
            capture_output=True,
        )
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(str(self.cert), str(key))
        server = self

        class Handler:
            async def handle_DATA(self, _server: Any, _session: Any, envelope: Any) -> str:  # noqa: N802
                server.messages.append(message_from_bytes(envelope.content))
                return "250 OK"

        def authenticate(
            _server: Any, _session: Any, _envelope: Any, mechanism: str, data: Any
        ) -> Any:
            ok = (
                isinstance(data, LoginPassword)
                and data.login.decode() == self.username
                and data.password.decode() == self.password
            )
            return AuthResult(success=ok)

        self.port = free_port()
        self.controller = Controller(
            Handler(),
            hostname="127.0.0.1",
            port=self.port,
            tls_context=context,
            require_starttls=True,
            authenticator=authenticate,
            auth_require_tls=True,
        )
        self.controller.start()

    def close(self) -> None:
        self.controller.stop()
