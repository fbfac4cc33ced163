"""Kafka over TLS and mutual TLS (through a TLS front: the test broker has none), and failures named.

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
from tests.support.tansu import free_port
from tests.support.tls_front import TlsFront
from vspd.config.toml_writer import render_toml
from vspd.demo.embedded_kafka import EmbeddedKafka


class SecureKafka:
    """A private Tansu that advertises a TLS front; `front` terminates TLS for it."""

    def __init__(self, directory: Path, server: Pair, client_ca: Path | None) -> None:
        self.front = TlsFront(server, client_ca)
        self.kafka = EmbeddedKafka(directory / "tansu.log", advertised_port=self.front.port)

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


def test_an_unreachable_cluster_is_named(tmp_path: Path) -> None:
    done = topics_create(tmp_path, {"bootstrap_servers": f"127.0.0.1:{free_port()}"})
    assert done.returncode == 1
    assert "unreachable" in done.stderr, done.stderr


def test_a_broker_runs_end_to_end_over_mutual_tls(
    mtls_kafka: SecureKafka,
    authority: Authority,
    tmp_path: Path,
    write_config: Callable[..., Path],
    daemons: Callable[..., Any],
) -> None:
    from confluent_kafka import Consumer, Producer, TopicPartition

    client = authority.issue("vspd-client", server=False)
    tls = {
        "security.protocol": "SSL",
        "ssl.ca.location": str(authority.cert),
        "ssl.certificate.location": str(client.cert),
        "ssl.key.location": str(client.key),
        "bootstrap.servers": mtls_kafka.front.bootstrap,
    }
    topics = {
        "frames_topic": unique_name("frames"),
        "results_topic": unique_name("results"),
        "dead_letter_topic": unique_name("dead"),
    }
    port = free_port()
    config = write_config(
        topics=topics,
        kafka={
            "bootstrap_servers": mtls_kafka.front.bootstrap,
            "security_protocol": "SSL",
            "ssl_ca_location": str(authority.cert),
            "ssl_certificate_location": str(client.cert),
            "ssl_key_location": str(client.key),
            "partitions": 1,
        },
        broker={"processor_addresses": [f"127.0.0.1:{port}"], "group_id": unique_name("tls")},
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
    producer = Producer(tls)
    for key, value in frames_for(["tls-cam"], 3):
        producer.produce(topics["frames_topic"], value, key)
    assert producer.flush(30) == 0
    consumer = Consumer({**tls, "group.id": unique_name("reader"), "enable.partition.eof": False})
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
