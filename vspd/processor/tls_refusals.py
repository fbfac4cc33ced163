"""TLS handshakes the processor refused, named in its own log.

gRPC's C core refuses a bad handshake itself (no client certificate, a
certificate the CA did not sign, a client speaking plaintext) and tells only
its own log, which it writes to file descriptor 2 beneath Python, at INFO
level. The processor therefore routes fd 2 through a pipe: every byte goes on
to the real stderr at once and unchanged (tracebacks, fatal errors and the
rest of gRPC's lines included), and each handshake refusal also becomes a
vspd log line that says what the client got wrong, once a minute per reason,
and a count in `vspd_processor_tls_refused_total{reason}`.
"""

from __future__ import annotations

import atexit
import contextlib
import faulthandler
import os
import threading
import time

import structlog
from prometheus_client import Counter

log = structlog.get_logger(__name__)

_MARKER = "handshake failed with"
# OpenSSL (Debian's grpcio) and BoringSSL (PyPI's) spell the reasons apart:
# matched on lower case with "_" as " ".
_REASONS: tuple[tuple[str, str, str], ...] = (
    (
        "peer did not return a certificate",
        "no client certificate",
        "the client sent no certificate: mutual TLS needs processor_cert_file and "
        "processor_key_file on the broker",
    ),
    (
        "certificate verify failed",
        "untrusted client certificate",
        "the client's certificate is not signed by tls_client_ca_file",
    ),
    (
        "unknown ca",
        "client does not trust this processor",
        "the client does not trust this processor's certificate (processor_ca_file on the broker)",
    ),
    (
        "bad certificate",
        "client does not trust this processor",
        "the client does not trust this processor's certificate (processor_ca_file on the broker)",
    ),
    (
        "wrong version number",
        "not TLS",
        "the client does not speak TLS (processor_tls = true on the broker)",
    ),
    (
        "http request",
        "not TLS",
        "the client does not speak TLS (processor_tls = true on the broker)",
    ),
)
_REPEAT_EVERY_S = 60.0


def describe_refusal(line: str) -> tuple[str, str] | None:
    """(reason, what it means) for one gRPC core log line, None if not a refused handshake."""
    text = line.lower().replace("_", " ")
    if _MARKER.replace("_", " ") not in text:
        return None
    for words, reason, meaning in _REASONS:
        if words in text:
            return reason, meaning
    detail = line.split(_MARKER, 1)[-1].strip() if _MARKER in line else line.strip()
    return "other", f"TLS handshake failed: {detail[:200]}"


class TlsRefusalLog:
    def __init__(self, refused: Counter) -> None:
        self.refused = refused  # ProcessorMetrics.tls_refused
        self._last: dict[str, float] = {}
        self._saved_stderr = -1
        self._read_end = -1
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        # gRPC reads its verbosity when it first logs: INFO is where refusals are.
        os.environ.setdefault("GRPC_VERBOSITY", "INFO")
        self._saved_stderr = os.dup(2)
        read_end, write_end = os.pipe()
        os.dup2(write_end, 2)
        os.close(write_end)
        self._read_end = read_end
        # A fatal error must reach the real stderr even if this relay cannot run.
        with contextlib.suppress(OSError, ValueError):
            faulthandler.enable(file=os.fdopen(os.dup(self._saved_stderr), "w"), all_threads=True)
        self._thread = threading.Thread(target=self._relay, name="tls-refusals", daemon=True)
        self._thread.start()
        # However the daemon ends, what went into the pipe reaches stderr before exit.
        atexit.register(self.stop)

    def stop(self) -> None:
        if self._thread is None:
            return
        os.dup2(self._saved_stderr, 2)  # closes the pipe's last write end: the relay drains, ends
        self._thread.join(5)
        self._thread = None

    def note(self, line: str) -> None:
        described = describe_refusal(line)
        if described is None:
            return
        reason, meaning = described
        self.refused.labels(reason).inc()
        now = time.monotonic()
        if now - self._last.get(reason, float("-inf")) >= _REPEAT_EVERY_S:
            self._last[reason] = now
            log.warning("TLS handshake refused", reason=meaning)

    def _relay(self) -> None:
        pending = b""
        try:
            while chunk := os.read(self._read_end, 65536):
                _write_all(self._saved_stderr, chunk)
                pending += chunk
                *lines, pending = pending.split(b"\n")
                pending = pending[-65536:]
                for line in lines:
                    with contextlib.suppress(Exception):  # the relay must never stop
                        self.note(line.decode("utf-8", "replace"))
        finally:
            os.close(self._read_end)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        try:
            written = os.write(fd, view)
        except OSError:
            return  # stderr itself is gone: nothing left to tell
        view = view[written:]
