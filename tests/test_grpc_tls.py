"""Broker to processor over TLS and mutual TLS, with real certificates made by the test."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.support.certificates import Authority
from tests.support.frames import frames_for
from tests.support.pipeline import Pipeline, all_results
from tests.support.processes import DaemonProcess
from vspd.config import ConfigError, load_config


@pytest.fixture
def authority(tmp_path: Path) -> Authority:
    return Authority.create(tmp_path)


@pytest.fixture
def line(
    bootstrap: str,
    fresh_topics: Callable[..., dict[str, str]],
    write_config: Callable[..., Path],
    daemons: Callable[..., DaemonProcess],
) -> Callable[..., Pipeline]:
    def make(broker: dict[str, Any], processor: dict[str, Any]) -> Pipeline:
        return Pipeline(
            bootstrap,
            fresh_topics,
            write_config,
            daemons,
            partitions=1,
            broker=broker,
            processor={"plugin": "tests.plugins.sample:behave", **processor},
        )

    return make


def test_tls_carries_frames_and_results(
    line: Callable[..., Pipeline], authority: Authority
) -> None:
    server = authority.issue("processor")
    pipeline = line(
        broker={"processor_tls": True, "processor_ca_file": str(authority.cert)},
        processor={"tls_cert_file": str(server.cert), "tls_key_file": str(server.key)},
    )
    pipeline.start_processor()
    pipeline.start_broker()
    pipeline.feed(frames_for(["secure"], 5))
    assert len(pipeline.results(all_results(5))) >= 5


def test_mutual_tls_admits_a_broker_with_a_client_certificate(
    line: Callable[..., Pipeline], authority: Authority
) -> None:
    server, client = authority.issue("processor"), authority.issue("broker", server=False)
    pipeline = line(
        broker={
            "processor_tls": True,
            "processor_ca_file": str(authority.cert),
            "processor_cert_file": str(client.cert),
            "processor_key_file": str(client.key),
        },
        processor={
            "tls_cert_file": str(server.cert),
            "tls_key_file": str(server.key),
            "tls_client_ca_file": str(authority.cert),
        },
    )
    pipeline.start_processor()
    pipeline.start_broker()
    pipeline.feed(frames_for(["mutual"], 5))
    assert len(pipeline.results(all_results(5))) >= 5


@pytest.mark.parametrize("mistake", ["no client certificate", "wrong CA", "plaintext broker"])
def test_refused_connections_are_named_and_never_fall_back_to_plaintext(
    line: Callable[..., Pipeline], authority: Authority, tmp_path: Path, mistake: str
) -> None:
    server = authority.issue("processor")
    other = Authority.create(tmp_path, "other")
    broker: dict[str, Any] = {"processor_tls": True, "processor_ca_file": str(authority.cert)}
    if mistake == "wrong CA":
        broker["processor_ca_file"] = str(other.cert)
    if mistake == "plaintext broker":
        broker = {}
    pipeline = line(
        broker=broker,
        processor={
            "tls_cert_file": str(server.cert),
            "tls_key_file": str(server.key),
            "tls_client_ca_file": str(authority.cert),
        },
    )
    processor = pipeline.start_processor()
    broker_process = pipeline.start_broker()
    pipeline.feed(frames_for(["refused"], 2))
    broker_process.wait_for_log("processor unavailable; frames wait and are retried")
    # The broker says why, in one line; nothing was processed in the clear.
    line_text = next(
        text for text in broker_process.log().splitlines() if "processor unavailable" in text
    )
    assert any(
        word in line_text.lower() for word in ("ssl", "handshake", "certificate", "socket closed")
    ), line_text
    assert '"event": "processor available"' not in broker_process.log()
    assert processor.process is not None
    assert processor.process.poll() is None
    # The processor says what the client got wrong too, where it can know it: the client's
    # own certificate check (wrong CA) fails on the broker's side only.
    if mistake != "wrong CA":
        said = "sent no certificate" if mistake == "no client certificate" else "does not speak TLS"
        processor.wait_for_log('"event": "TLS handshake refused"')
        refusal = next(
            text for text in processor.log().splitlines() if "TLS handshake refused" in text
        )
        assert said in refusal, refusal


def test_check_config_names_missing_or_unpaired_tls_files(
    write_config: Callable[..., Path], tmp_path: Path
) -> None:
    cases = [
        ({"processor": {"tls_cert_file": str(tmp_path / "absent.pem"), "tls_key_file": "/x"}}, "does not exist"),
        ({"processor": {"tls_cert_file": str(tmp_path)}}, "go together"),
        ({"broker": {"processor_ca_file": str(tmp_path)}}, "processor_tls is false"),
    ]  # fmt: skip
    for sections, reason in cases:
        path = write_config(name="bad.toml", **sections)
        with pytest.raises(ConfigError, match=reason):
            load_config(path, {})


@pytest.mark.parametrize(
    ("core_line", "meaning"),
    [
        # BoringSSL (PyPI grpcio), as seen in this suite's processor logs.
        (
            "I1201 11:44:29.516193 6896 ssl_transport_security.cc:2563] Handshake failed with "
            "error SSL_ERROR_SSL: error:100000c0:SSL routines:OPENSSL_internal:"
            "PEER_DID_NOT_RETURN_A_CERTIFICATE: Invalid certificate verification context",
            "sent no certificate",
        ),
        # OpenSSL (Debian's grpcio 1.51) spells the same reasons in lower case.
        (
            "I1201 ssl_transport_security.cc:1446] Handshake failed with fatal error "
            "SSL_ERROR_SSL: error:0A0000C7:SSL routines::peer did not return a certificate.",
            "sent no certificate",
        ),
        (
            "Handshake failed with fatal error SSL_ERROR_SSL: error:0A000086:SSL routines::"
            "certificate verify failed.",
            "not signed by tls_client_ca_file",
        ),
        (
            "Handshake failed with fatal error SSL_ERROR_SSL: error:0A00009C:SSL routines::"
            "http request.",
            "does not speak TLS",
        ),
    ],
)
def test_grpc_core_refusals_are_named_in_both_tls_libraries(core_line: str, meaning: str) -> None:
    from vspd.processor.tls_refusals import describe_refusal

    described = describe_refusal(core_line)
    assert described is not None
    assert meaning in described[1]
    assert describe_refusal("I1201 chttp2_server.cc:1200] listening on 0.0.0.0:50051") is None
