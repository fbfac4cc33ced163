"""Secret values: never in logs, preferably never in the config file.

A secret key takes one of:
- ``credential:NAME``: a systemd credential (``$CREDENTIALS_DIRECTORY``);
- ``file:/absolute/path``: a file readable by the daemon;
- anything else: the secret itself (fine for a demo, not for a fleet).

Least privilege: every secret belongs to one *scope*, the daemons that need it
(``DAEMON_SCOPES``), and lives in /etc/vspd/credentials/<scope>/<NAME>. Each
packaged unit loads only its scopes (``LoadCredential=kafka:/etc/vspd/credentials/kafka``,
which systemd names ``kafka_<NAME>``); the processor, which runs plug-ins on
untrusted images, gets none. A daemon resolves only its own scopes' secrets;
the others stay unloaded references that refuse to be read. ``check-config``
and the other commands resolve all of them; without ``$CREDENTIALS_DIRECTORY``
(outside systemd) from /etc/vspd/credentials/<scope>/<NAME>, what the units load.
"""

from __future__ import annotations

import os
import re
from collections.abc import Collection
from functools import partial
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BeforeValidator, SecretStr, ValidationInfo

from vspd.errors import VspdError

Scope = Literal["kafka", "cameras", "alerts"]
SCOPES: tuple[Scope, ...] = ("kafka", "cameras", "alerts")
# Whose secrets each daemon may read; the units' LoadCredential= lines follow
# it (a test holds them to it).
DAEMON_SCOPES: dict[str, frozenset[Scope]] = {
    "broker": frozenset({"kafka"}),
    "capture": frozenset({"kafka", "cameras"}),
    "alerts": frozenset({"kafka", "alerts"}),
    "processor": frozenset(),
    "topics": frozenset({"kafka"}),
    "report": frozenset(),
    "status": frozenset({"kafka"}),
    "replay": frozenset({"kafka"}),
}
CONTEXT_SCOPES = "secret_scopes"  # validation context key: the scopes to resolve (absent: all)
# Where the packaged units load credentials from (LoadCredential=<scope>:<here>/<scope>).
PACKAGED_CREDENTIALS = Path("/etc/vspd/credentials")
CONTEXT_CREDENTIALS_ROOT = "credentials_root"  # validation context key, for tests


class UnloadedSecret(SecretStr):
    """A secret of another daemon's scope: validated as a reference, never read."""

    def get_secret_value(self) -> str:
        raise VspdError("a secret of another daemon's scope was used (not loaded here)")


def resolve_secret(value: object, info: ValidationInfo, scope: Scope) -> object:
    if isinstance(value, SecretStr) or not isinstance(value, str):
        return value
    context = info.context or {}
    # The loader passes its environment, so that tests need not touch os.environ.
    environ = context.get("environ", os.environ)
    scopes = scopes_read(info)
    if value.startswith("credential:"):
        name = value.removeprefix("credential:")
        if not _CREDENTIAL_NAME.fullmatch(name):
            raise ValueError(
                f"credential name {name[:40]!r} must be a file name in $CREDENTIALS_DIRECTORY "
                "(letters, digits, '_', '.', '-'; no '/')"
            )
        if scope not in scopes:
            return UnloadedSecret(value)
        directory = environ.get("CREDENTIALS_DIRECTORY")
        if not directory:
            # Outside systemd (check-config, a daemon run by hand): the files the
            # packaged units would load, so that what is checked is what will run.
            root = Path(context.get(CONTEXT_CREDENTIALS_ROOT, PACKAGED_CREDENTIALS))
            path = root / scope / name
            if not path.exists():
                raise ValueError(
                    f"refers to credential {name!r}, which is not in {str(root / scope)!r} "
                    "(where the packaged units load it from; $CREDENTIALS_DIRECTORY is not set)"
                )
            return _read(path)
        return _read(_credential_path(Path(directory), scope, name))
    if value.startswith("file:"):
        if scope not in scopes:
            return UnloadedSecret(value)
        return _read(Path(value.removeprefix("file:")))
    return value


def _credential_path(directory: Path, scope: Scope, name: str) -> Path:
    """Where credential NAME of SCOPE is, in every layout vspd meets."""
    candidates = (
        directory / name,  # LoadCredential=NAME:/path, or a directory of plain files
        directory
        / f"{scope}_{name}",  # the packaged units: LoadCredential=SCOPE:/etc/vspd/credentials/SCOPE
        directory / scope / name,  # CREDENTIALS_DIRECTORY=/etc/vspd/credentials (check-config)
        directory
        / f"vspd_{name}",  # units before scopes: LoadCredential=vspd:/etc/vspd/credentials
    )
    for candidate in candidates:
        if candidate.exists():
            return candidate
    return directory / scope / name if (directory / scope).is_dir() else directory / name


def secret_in(scope: Scope) -> BeforeValidator:
    return BeforeValidator(partial(resolve_secret, scope=scope))


def _resolve_url(value: object, info: ValidationInfo, scope: Scope) -> object:
    resolved = resolve_secret(value, info, scope)
    return value if isinstance(resolved, UnloadedSecret) else resolved


def url_in(scope: Scope) -> BeforeValidator:
    """For a URL that may be a secret reference itself (a webhook with its token)."""
    return BeforeValidator(partial(_resolve_url, scope=scope))


def scopes_read(info: ValidationInfo) -> Collection[str]:
    """The scopes this validation serves: a daemon's own (DAEMON_SCOPES), or all of them."""
    scopes: Collection[str] = (info.context or {}).get(CONTEXT_SCOPES, SCOPES)
    return scopes


def is_unloaded_reference(value: str, info: ValidationInfo, scope: Scope) -> bool:
    """A credential:/file: reference left unread because SCOPE is not this daemon's."""
    return scope not in scopes_read(info) and value.startswith(("credential:", "file:"))


_CREDENTIAL_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_.-]{0,127}")
MAX_SECRET_BYTES = 64 * 1024


def _read(path: Path) -> str:
    # A FIFO or device would block or never end: only a regular file is a secret.
    if path.exists() and not path.is_file():
        raise ValueError(f"secret file {str(path)!r} is not a regular file")
    try:
        with path.open("rb") as handle:
            data = handle.read(MAX_SECRET_BYTES + 1)
    except FileNotFoundError:
        raise ValueError(f"secret file {str(path)!r} does not exist") from None
    except OSError as exc:
        raise ValueError(f"secret file {str(path)!r} cannot be read: {exc.strerror}") from None
    if len(data) > MAX_SECRET_BYTES:
        raise ValueError(f"secret file {str(path)!r} is larger than {MAX_SECRET_BYTES} bytes")
    try:
        return data.decode("utf-8").rstrip("\r\n")
    except UnicodeDecodeError:
        raise ValueError(f"secret file {str(path)!r} is not UTF-8 text") from None


KafkaSecret = Annotated[SecretStr, secret_in("kafka")]
CameraSecret = Annotated[SecretStr, secret_in("cameras")]
AlertsSecret = Annotated[SecretStr, secret_in("alerts")]
