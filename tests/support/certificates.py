"""Real certificates made by the test with openssl: a CA, and server and client certificates it signs."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


@dataclass(frozen=True)
class Pair:
    cert: Path
    key: Path


@dataclass(frozen=True)
class Authority:
    directory: Path
    name: str

    @property
    def cert(self) -> Path:
        return self.directory / f"{self.name}-ca.pem"

    @classmethod
    def create(cls, directory: Path, name: str = "test") -> Authority:
        authority = cls(directory, name)
        _openssl(
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            "-subj", f"/CN={name} CA",
            "-keyout", str(directory / f"{name}-ca.key"), "-out", str(authority.cert),
        )  # fmt: skip
        return authority

    def issue(
        self, common_name: str, server: bool = True, hosts: str = "DNS:localhost,IP:127.0.0.1"
    ) -> Pair:
        base = self.directory / f"{self.name}-{common_name}"
        key, request, cert = (
            base.with_suffix(".key"),
            base.with_suffix(".csr"),
            base.with_suffix(".pem"),
        )
        extensions = base.with_suffix(".ext")
        usage = "serverAuth" if server else "clientAuth"
        extensions.write_text(f"subjectAltName={hosts}\nextendedKeyUsage={usage}\n")
        _openssl(
            "req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={common_name}",
            "-keyout", str(key), "-out", str(request),
        )  # fmt: skip
        _openssl(
            "x509", "-req", "-in", str(request), "-days", "2",
            "-CA", str(self.cert), "-CAkey", str(self.directory / f"{self.name}-ca.key"),
            "-CAcreateserial", "-extfile", str(extensions), "-out", str(cert),
        )  # fmt: skip
        return Pair(cert, key)
