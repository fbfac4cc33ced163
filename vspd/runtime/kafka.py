"""Kafka client settings built in one place, and topic administration.

Works with confluent-kafka 1.7 (Debian trixie) and the newest release: only
settings and calls that both know are used.
"""

from __future__ import annotations

import logging
import socket
import ssl
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import structlog
from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

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


def describe_failure(error: KafkaError) -> str:
    """One line naming what went wrong: authentication, certificate, host name, unreachable."""
    name, text = str(error.name()), str(error.str())
    for code, words, meaning in _FAILURES:
        if (code and name == code) or (words and words in text):
            return f"{meaning} ({text})"
    return text


class KafkaErrorLog:
    """librdkafka's error_cb: each distinct failure logged once a minute, named."""

    def __init__(self, client: str) -> None:
        self._client = client
        self._last: dict[str, float] = {}
        self.last_failure = ""

    def __call__(self, error: KafkaError) -> None:
        reason = describe_failure(error)
        self.last_failure = reason
        key = reason.split(" (", 1)[0]
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


def producer_settings(kafka: KafkaConfig, client_id: str, **extra: Any) -> dict[str, Any]:
    settings = common_settings(kafka, client_id)
    settings.update(
        {
            "enable.idempotence": True,
            "acks": "all",
            "compression.type": kafka.compression,
            "message.max.bytes": kafka.message_max_bytes,
            # Live video: a frame waits at most 1 ms for others to share its request
            # (frames are large; a batch fills by size long before it would by time).
            "linger.ms": 1,
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


def _list_topics(
    admin: AdminClient, kafka: KafkaConfig, errors: KafkaErrorLog, timeout_s: float
) -> Any:
    """The cluster's topics; a failure that waiting cannot cure is named at once."""
    deadline = time.monotonic() + timeout_s
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
                raise KafkaSetupError(
                    f"cannot use Kafka at {kafka.bootstrap_servers}: {reason}"
                ) from None


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


@dataclass(frozen=True)
class TopicOutcome:
    topic: str
    created: bool
    partitions: int
    note: str = ""


def configured_topics(kafka: KafkaConfig) -> list[str]:
    return [kafka.frames_topic, kafka.results_topic, kafka.dead_letter_topic]


def create_topics(
    kafka: KafkaConfig, topics: Iterable[str] | None = None, timeout_s: float = 15.0
) -> list[TopicOutcome]:
    """Create the topics that do not exist yet; existing ones are left untouched."""
    errors = KafkaErrorLog("vspd-admin")
    admin = AdminClient({**common_settings(kafka, "vspd-admin"), "error_cb": errors})
    wanted = list(topics if topics is not None else configured_topics(kafka))
    existing = _list_topics(admin, kafka, errors, timeout_s)
    outcomes: list[TopicOutcome] = []
    missing = [topic for topic in wanted if topic not in existing]
    for topic in wanted:
        if topic in existing:
            count = len(existing[topic].partitions)
            note = (
                "" if count == kafka.partitions else f"configured {kafka.partitions}; not changed"
            )
            outcomes.append(TopicOutcome(topic, created=False, partitions=count, note=note))
    if missing:
        futures = admin.create_topics(
            [
                NewTopic(
                    topic,
                    kafka.partitions,
                    kafka.replication_factor,
                    # Apache Kafka refuses messages over 1 MB per topic by default;
                    # frames (and results with their image) are larger.
                    config={"max.message.bytes": str(kafka.message_max_bytes)},
                )
                for topic in missing
            ],
            request_timeout=timeout_s,
        )
        for topic, future in futures.items():
            try:
                future.result(timeout=timeout_s)
            except KafkaException as exc:
                error: KafkaError = exc.args[0]
                if error.code() != KafkaError.TOPIC_ALREADY_EXISTS:
                    raise KafkaSetupError(f"cannot create topic {topic!r}: {error.str()}") from None
                outcomes.append(TopicOutcome(topic, created=False, partitions=kafka.partitions))
                continue
            outcomes.append(TopicOutcome(topic, created=True, partitions=kafka.partitions))
    order = {topic: index for index, topic in enumerate(wanted)}
    return sorted(outcomes, key=lambda outcome: order[outcome.topic])
