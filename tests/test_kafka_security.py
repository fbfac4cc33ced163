"""Kafka over TLS, mutual TLS and SASL (through a front: the test broker has neither), failures named.

Every case drives the real `vspd topics create`, whose Kafka settings are the
ones every daemon uses (vspd.runtime.kafka), plus one broker end to end.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.certificates import Authority, Pair
from tests.support.frames import frames_for
from tests.support.kafka import unique_name
from tests.support.kafka_front import KafkaFront
from tests.support.tansu import TansuBroker, free_port
from vspd.config.toml_writer import render_toml


class SecureKafka:
    """A private Tansu that advertises a front; `front` terminates TLS and/or SASL for it."""

    def __init__(
        self,
        directory: Path,
        server: Pair | None,
        client_ca: Path | None,
        users: dict[str, str] | None = None,
        mechanisms: tuple[str, ...] = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"),
    ) -> None:
        self.front = KafkaFront(server, client_ca, users, mechanisms)
        self.kafka = TansuBroker(free_port(), directory / "tansu.log", self.front.port)

    def __enter__(self) -> SecureKafka:
        self.kafka.start()
        self.front.start(self.kafka.port)
        return self

    def __exit__(self, *_exc: object) -> None:
        self.front.close()
        self.kafka.stop()


@pytest.fixture
def authority(tmp_path: Path) -> Authority:
    return Authority.create(tmp_path)


def topics_create(directory: Path, kafka: dict[str, Any]) -> subprocess.CompletedProcess[str]:
    config = directory / f"{unique_name('kafka')}.toml"
    config.write_text(render_toml({"kafka": kafka, "logging": {"format": "json"}}))
    return subprocess.run(
        [sys.executable, "-m", "vspd", "--config", str(config), "topics", "create"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture
def tls_kafka(tmp_path: Path, authority: Authority) -> Iterator[SecureKafka]:
    with SecureKafka(tmp_path, authority.issue("kafka"), None) as kafka:
        yield kafka


@pytest.fixture
def mtls_kafka(tmp_path: Path, authority: Authority) -> Iterator[SecureKafka]:
    with SecureKafka(tmp_path, authority.issue("kafka"), authority.cert) as kafka:
        yield kafka


def test_tls_with_the_right_ca_works(
    tls_kafka: SecureKafka, authority: Authority, tmp_path: Path
) -> None:
    done = topics_create(
        tmp_path,
        {
            "bootstrap_servers": tls_kafka.front.bootstrap,
            "security_protocol": "SSL",
            "ssl_ca_location": str(authority.cert),
        },
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "created" in done.stdout


def test_an_untrusted_certificate_is_named(tls_kafka: SecureKafka, tmp_path: Path) -> None:
    other = Authority.create(tmp_path, "other")
    done = topics_create(
        tmp_path,
        {
            "bootstrap_servers": tls_kafka.front.bootstrap,
            "security_protocol": "SSL",
            "ssl_ca_location": str(other.cert),
        },
    )
    assert done.returncode == 1
    assert "certificate is not trusted" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr


def test_a_certificate_for_another_host_is_named(tmp_path: Path, authority: Authority) -> None:
    elsewhere = authority.issue("elsewhere", hosts="DNS:kafka.elsewhere.example")
    with SecureKafka(tmp_path, elsewhere, None) as kafka:
        done = topics_create(
            tmp_path,
            {
                "bootstrap_servers": kafka.front.bootstrap,
                "security_protocol": "SSL",
                "ssl_ca_location": str(authority.cert),
            },
        )
    assert done.returncode == 1
    assert "does not match its host name" in done.stderr, done.stderr


def test_mutual_tls_needs_the_client_certificate(
    mtls_kafka: SecureKafka, authority: Authority, tmp_path: Path
) -> None:
    client = authority.issue("vspd-client", server=False)
    settings = {
        "bootstrap_servers": mtls_kafka.front.bootstrap,
        "security_protocol": "SSL",
        "ssl_ca_location": str(authority.cert),
    }
    without = topics_create(tmp_path, settings)
    assert without.returncode == 1
    assert "Traceback" not in without.stderr
    assert "cannot use Kafka" in without.stderr, without.stderr
    with_cert = topics_create(
        tmp_path,
        {
            **settings,
            "ssl_certificate_location": str(client.cert),
            "ssl_key_location": str(client.key),
        },
    )
    assert with_cert.returncode == 0, with_cert.stdout + with_cert.stderr


SASL_USERS = {"vspd": "correct horse battery staple"}


@pytest.fixture
def sasl_kafka(tmp_path: Path) -> Iterator[SecureKafka]:
    with SecureKafka(tmp_path, None, None, SASL_USERS) as kafka:
        yield kafka


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"])
def test_sasl_with_the_right_password_works(
    sasl_kafka: SecureKafka, tmp_path: Path, mechanism: str
) -> None:
    secret = tmp_path / "kafka-password"
    secret.write_text(SASL_USERS["vspd"] + "\n")
    done = topics_create(
        tmp_path,
        {
            "bootstrap_servers": sasl_kafka.front.bootstrap,
            "security_protocol": "SASL_PLAINTEXT",
            "sasl_mechanism": mechanism,
            "sasl_username": "vspd",
            "sasl_password": f"file:{secret}",
        },
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "created" in done.stdout
    assert sasl_kafka.front.counters.authenticated >= 1
    assert sasl_kafka.front.counters.refused == []


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-512"])
def test_a_wrong_sasl_password_is_named_and_not_shown(
    sasl_kafka: SecureKafka, tmp_path: Path, mechanism: str
) -> None:
    done = topics_create(
        tmp_path,
        {
            "bootstrap_servers": sasl_kafka.front.bootstrap,
            "security_protocol": "SASL_PLAINTEXT",
            "sasl_mechanism": mechanism,
            "sasl_username": "vspd",
            "sasl_password": "not-the-password-8d1f",
        },
    )
    assert done.returncode == 1
    assert "authentication failed" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
    assert "not-the-password-8d1f" not in done.stdout + done.stderr
    assert sasl_kafka.front.counters.refused, "the front never saw the wrong password"
    assert sasl_kafka.front.counters.authenticated == 0


def test_a_mechanism_the_cluster_does_not_offer_is_named(tmp_path: Path) -> None:
    with SecureKafka(tmp_path, None, None, SASL_USERS, mechanisms=("SCRAM-SHA-512",)) as kafka:
        done = topics_create(
            tmp_path,
            {
                "bootstrap_servers": kafka.front.bootstrap,
                "security_protocol": "SASL_PLAINTEXT",
                "sasl_mechanism": "PLAIN",
                "sasl_username": "vspd",
                "sasl_password": SASL_USERS["vspd"],
            },
        )
    assert done.returncode == 1
    assert "does not offer this sasl_mechanism" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr


def test_sasl_over_tls_works(tmp_path: Path, authority: Authority) -> None:
    with SecureKafka(tmp_path, authority.issue("kafka"), None, SASL_USERS) as kafka:
        done = topics_create(
            tmp_path,
            {
                "bootstrap_servers": kafka.front.bootstrap,
                "security_protocol": "SASL_SSL",
                "ssl_ca_location": str(authority.cert),
                "sasl_mechanism": "SCRAM-SHA-256",
                "sasl_username": "vspd",
                "sasl_password": SASL_USERS["vspd"],
            },
        )
        authenticated = kafka.front.counters.authenticated
    assert done.returncode == 0, done.stdout + done.stderr
    assert authenticated >= 1


def test_an_unreachable_cluster_is_named(tmp_path: Path) -> None:
    done = topics_create(tmp_path, {"bootstrap_servers": f"127.0.0.1:{free_port()}"})
    assert done.returncode == 1
    assert "unreachable" in done.stderr, done.stderr


@pytest.mark.parametrize("security", ["mutual TLS", "SASL_SSL with SCRAM-SHA-512"])
def test_a_broker_runs_end_to_end_over_a_secured_kafka(
    security: str,
    authority: Authority,
    tmp_path: Path,
    write_config: Callable[..., Path],
    daemons: Callable[..., Any],
) -> None:
    server = authority.issue("kafka")
    if security == "mutual TLS":
        secured = SecureKafka(tmp_path, server, authority.cert)
        client = authority.issue("vspd-client", server=False)
        kafka = {
            "security_protocol": "SSL",
            "ssl_certificate_location": str(client.cert),
            "ssl_key_location": str(client.key),
        }
    else:
        secured = SecureKafka(tmp_path, server, None, SASL_USERS)
        kafka = {
            "security_protocol": "SASL_SSL",
            "sasl_mechanism": "SCRAM-SHA-512",
            "sasl_username": "vspd",
            "sasl_password": SASL_USERS["vspd"],
        }
    kafka = {**kafka, "ssl_ca_location": str(authority.cert)}
    with secured:
        kafka["bootstrap_servers"] = secured.front.bootstrap
        run_a_broker_over(kafka, write_config, daemons)
        if security != "mutual TLS":
            assert secured.front.counters.authenticated >= 3  # producer, consumer, broker
            assert secured.front.counters.refused == []


def run_a_broker_over(
    kafka: dict[str, Any], write_config: Callable[..., Path], daemons: Callable[..., Any]
) -> None:
    """A processor and a broker on this Kafka: three frames in, their three results out."""
    from confluent_kafka import Consumer, Producer, TopicPartition

    client_settings = {
        key.replace("_", ".").replace("sasl.mechanism", "sasl.mechanisms"): value
        for key, value in kafka.items()
    }
    topics = {
        "frames_topic": unique_name("frames"),
        "results_topic": unique_name("results"),
        "dead_letter_topic": unique_name("dead"),
    }
    port = free_port()
    config = write_config(
        topics=topics,
        kafka={**kafka, "partitions": 1},
        broker={"processor_addresses": [f"127.0.0.1:{port}"], "group_id": unique_name("secure")},
        processor={"listen": f"127.0.0.1:{port}", "plugin": "tests.plugins.sample:behave"},
    )
    created = subprocess.run(
        [sys.executable, "-m", "vspd", "--config", str(config), "topics", "create"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert created.returncode == 0, created.stderr
    daemons("--config", str(config), "processor", name="processor").wait_for_log('"serving"')
    daemons("--config", str(config), "broker", name="broker").wait_for_log('"serving"')
    producer = Producer(client_settings)
    for key, value in frames_for(["secure-cam"], 3):
        producer.produce(topics["frames_topic"], value, key)
    assert producer.flush(30) == 0
    consumer = Consumer(
        {**client_settings, "group.id": unique_name("reader"), "enable.partition.eof": False}
    )
    consumer.assign([TopicPartition(topics["results_topic"], 0, 0)])
    seen = []
    for _ in range(600):
        message = consumer.poll(0.2)
        if message is not None and not message.error():
            seen.append(message.offset())
        if len(seen) >= 3:
            break
    consumer.close()
    assert seen == [0, 1, 2]
