"""Kafka client settings built in one place, and Kafka's failures named for people.

Works with confluent-kafka 1.7 (Debian trixie) and the newest release: only
settings and calls that both know are used.
"""

from __future__ import annotations

import logging
import re
import socket
import ssl
import time
from collections.abc import Callable
from typing import Any

import structlog
from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient

from vspd.config.model import KafkaConfig
from vspd.errors import KafkaSetupError

log = structlog.get_logger(__name__)
LIBRDKAFKA_LOG = logging.getLogger("librdkafka")


# What librdkafka's errors mean to an operator. Checked in order; the first match names it.
_FAILURES: tuple[tuple[str, str, str], ...] = (
    (
        "",
        "Unsupported SASL mechanism",
        "authentication failed: the cluster does not offer this sasl_mechanism",
    ),
    (
        "_AUTHENTICATION",
        "",
        "authentication failed: wrong sasl_username/sasl_password or mechanism",
    ),
    ("", "SASL", "authentication failed: wrong sasl_username/sasl_password or mechanism"),
    ("", "Authentication", "authentication failed: wrong sasl_username/sasl_password or mechanism"),
    ("", "hostname", "the broker's certificate does not match its host name"),
    ("", "Hostname", "the broker's certificate does not match its host name"),
    ("", "certificate verify failed", "the broker's certificate is not trusted (ssl_ca_location)"),
    ("", "alert", "the broker refused this client's TLS (a client certificate it trusts?)"),
    ("_SSL", "", "TLS failed"),
    ("_RESOLVE", "", "the host name cannot be resolved"),
    ("", "Connection refused", "unreachable: connection refused"),
    ("", "timed out", "unreachable: connection timed out"),
)
# Failures that waiting will not cure: say so at once instead of after a timeout.
FINAL_FAILURE_WORDS = ("authentication", "certificate", "TLS")
# What to try, for a person at a terminal, by the start of the failure's name.
_HINTS: tuple[tuple[str, str], ...] = (
    ("unreachable: connection refused", "is Kafka running, and listening on that address?"),
    ("unreachable: connection timed out", "a firewall, or a wrong address in bootstrap_servers?"),
    ("the host name cannot be resolved", "check the host name in [kafka] bootstrap_servers"),
    ("no answer", "is Kafka running there? (vspd speaks the Kafka protocol on bootstrap_servers)"),
)


def hint_for(reason: str) -> str:
    for start, hint in _HINTS:
        if reason.startswith(start):
            return hint
    return ""


def describe_failure(error: KafkaError) -> str:
    """One line naming what went wrong: authentication, certificate, host name, unreachable."""
    name, text = str(error.name()), str(error.str())
    for code, words, meaning in _FAILURES:
        if (code and name == code) or (words and words in text):
            return f"{meaning} ({text})"
    return text


# librdkafka's codes for "no broker can be reached now" (it never says when they are back).
_UNREACHABLE_CODES = frozenset({"_ALL_BROKERS_DOWN", "_RESOLVE", "_AUTHENTICATION", "_SSL"})
RECHECK_S = 5.0


class KafkaErrorLog:
    """librdkafka's error_cb: each distinct failure logged once a minute, named.

    It also remembers whether Kafka is unreachable now, for readiness: set by
    librdkafka's errors, cleared by the daemon when traffic flows again or a
    metadata request answers (``recheck``).
    """

    def __init__(self, client: str) -> None:
        self._client = client
        self._last: dict[str, float] = {}
        self.last_failure = ""
        self.unreachable = ""  # why Kafka cannot be reached now; "" when it can
        self._checked_at = float("-inf")

    def reached(self) -> None:
        if self.unreachable:
            log.info("kafka reachable again", client=self._client)
        self.unreachable = ""

    def recheck(self, probe: Callable[[], object]) -> None:
        """While unreachable, ask Kafka (``probe``, a short metadata request) now and then."""
        now = time.monotonic()
        if not self.unreachable or now - self._checked_at < RECHECK_S:
            return
        self._checked_at = now
        try:
            probe()
        except KafkaException:
            return
        self.reached()

    def __call__(self, error: KafkaError) -> None:
        reason = describe_failure(error)
        self.last_failure = reason
        if str(error.name()) in _UNREACHABLE_CODES:
            self.unreachable = reason.split(" (", 1)[0]
        # "0/2 brokers are down" and "0/1 brokers are down" are one failure.
        key = re.sub(r"\d+", "#", reason.split(" (", 1)[0])
        now = time.monotonic()
        if now - self._last.get(key, float("-inf")) >= 60:
            self._last[key] = now
            log.warning("kafka", client=self._client, error=reason, code=error.name())


def common_settings(kafka: KafkaConfig, client_id: str) -> dict[str, Any]:
    settings: dict[str, Any] = {
        "bootstrap.servers": kafka.bootstrap_servers,
        "client.id": client_id,
        "security.protocol": kafka.security_protocol,
        "socket.keepalive.enable": True,
        # librdkafka's own lines go through the logging setup, not raw to stderr.
        "logger": LIBRDKAFKA_LOG,
        "log.connection.close": False,
    }
    if kafka.security_protocol.startswith("SASL"):
        settings["sasl.mechanisms"] = kafka.sasl_mechanism
        settings["sasl.username"] = kafka.sasl_username
        if kafka.sasl_password is not None:
            settings["sasl.password"] = kafka.sasl_password.get_secret_value()
    if kafka.security_protocol in ("SSL", "SASL_SSL"):
        locations = {
            "ssl.ca.location": kafka.ssl_ca_location,
            "ssl.certificate.location": kafka.ssl_certificate_location,
            "ssl.key.location": kafka.ssl_key_location,
        }
        settings.update({key: value for key, value in locations.items() if value})
        if kafka.ssl_key_password is not None:
            settings["ssl.key.password"] = kafka.ssl_key_password.get_secret_value()
    return settings


# With 4 or 5 requests in flight (librdkafka's default is 5) an idempotent producer
# polls its socket with a zero timeout until an answer comes: bursts cost 140-200 µs
# of CPU a message against ~25 with at most 3, at the same throughput; 1 loses a
# third of it (python -m bench.producer_bench).
PRODUCER_MAX_IN_FLIGHT = 3


def producer_settings(kafka: KafkaConfig, client_id: str, **extra: Any) -> dict[str, Any]:
    settings = common_settings(kafka, client_id)
    settings.update(
        {
            "enable.idempotence": True,
            "acks": "all",
            "compression.type": kafka.compression,
            "message.max.bytes": kafka.message_max_bytes,
            # No lingering: a message is sent as soon as a request slot is free, and
            # what arrives while the slots are busy shares the next request (batching
            # by backpressure). librdkafka waits out a linger in poll() calls of whole
            # milliseconds, so a sub-ms remainder is a zero-timeout poll loop: the
            # broker's producer thread took 92 µs a result at 0, 140 at 1, 165 at 5 (one run
            # each of bench.broker_bench (b); whole-process figures did not tell them apart).
            "linger.ms": 0,
            "max.in.flight.requests.per.connection": PRODUCER_MAX_IN_FLIGHT,
        }
    )
    settings.update(extra)
    settings.update(kafka.librdkafka)
    return settings


def consumer_settings(
    kafka: KafkaConfig, client_id: str, group_id: str, **extra: Any
) -> dict[str, Any]:
    settings = common_settings(kafka, client_id)
    settings.update(
        {
            "group.id": group_id,
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": "earliest",
            "session.timeout.ms": kafka.session_timeout_ms,
            "fetch.max.bytes": max(kafka.message_max_bytes, 52_428_800),
            "max.partition.fetch.bytes": kafka.message_max_bytes,
            "receive.message.max.bytes": max(kafka.message_max_bytes, 52_428_800) + 1_000_000,
            # Bound what librdkafka prefetches: frames are big.
            "queued.max.messages.kbytes": 65_536,
            # Live video: a fetch that finds nothing returns within 5 ms, not
            # librdkafka's 500 ms (some brokers hold a fetch for the full wait):
            # capture->result p50 went from 30.7 to 18.0 ms at 8 cameras with
            # linger.ms 1 (bench/pipeline_bench.py).
            "fetch.wait.max.ms": 5,
        }
    )
    settings.update(extra)
    settings.update(kafka.librdkafka)
    return settings


def list_topics(
    admin: AdminClient, kafka: KafkaConfig, errors: KafkaErrorLog, timeout_s: float
) -> Any:
    """The cluster's topics; a failure that waiting cannot cure is named at once."""
    deadline = time.monotonic() + timeout_s
    said_waiting = False
    while True:
        try:
            return admin.list_topics(timeout=1.0).topics
        except KafkaException:
            admin.poll(0)  # error_cb runs only when the client is polled
            failure = errors.last_failure
            final = any(word in failure.split(" (", 1)[0] for word in FINAL_FAILURE_WORDS)
            if final or time.monotonic() >= deadline:
                reason = failure or "no answer"
                if "certificate" in reason.split(" (", 1)[0]:
                    reason = probe_certificate(kafka) or reason
                hint = hint_for(reason)
                raise KafkaSetupError(
                    f"cannot use Kafka at {kafka.bootstrap_servers}: {reason}"
                    + (f"; {hint}" if hint else "")
                ) from None
            if not said_waiting:
                said_waiting = True
                log.warning(
                    "waiting for Kafka",
                    bootstrap_servers=kafka.bootstrap_servers,
                    reason=(failure or "no answer yet").split(" (", 1)[0],
                    gives_up_in_s=round(deadline - time.monotonic()),
                )


def probe_certificate(kafka: KafkaConfig) -> str:
    """Why the first broker's certificate fails verification, in OpenSSL's own words.

    librdkafka says only "certificate verify failed"; one handshake of our own
    with the same CA tells an untrusted issuer from a host-name mismatch.
    """
    host, _, port = kafka.bootstrap_servers.split(",")[0].strip().rpartition(":")
    host = host.strip("[]")
    try:
        context = ssl.create_default_context(cafile=kafka.ssl_ca_location or None)
        if kafka.ssl_certificate_location and kafka.ssl_key_location:
            password = kafka.ssl_key_password.get_secret_value() if kafka.ssl_key_password else None
            context.load_cert_chain(
                kafka.ssl_certificate_location, kafka.ssl_key_location, password
            )
        with (
            socket.create_connection((host, int(port)), timeout=5) as raw,
            context.wrap_socket(raw, server_hostname=host),
        ):
            return ""
    except ssl.SSLCertVerificationError as exc:
        if exc.verify_code in _NAME_MISMATCH:
            return f"the broker's certificate does not match its host name {host!r} ({exc.verify_message})"
        return f"the broker's certificate is not trusted (ssl_ca_location): {exc.verify_message}"
    except (OSError, ValueError):
        return ""


_NAME_MISMATCH = (62, 64)  # X509_V_ERR_HOSTNAME_MISMATCH, X509_V_ERR_IP_ADDRESS_MISMATCH
