"""Secret values: never in logs, preferably never in the config file.

A secret key takes one of:
- ``credential:NAME``: the file NAME in ``$CREDENTIALS_DIRECTORY`` (systemd
  ``LoadCredential=NAME:/path``). The packaged units load the directory
  /etc/vspd/credentials as ``LoadCredential=vspd:...``, which systemd names
  ``vspd_<file>``; NAME may be given either way, so a secret in
  /etc/vspd/credentials/kafka-password is ``credential:kafka-password``;
- ``file:/absolute/path``: a file readable by the daemon;
- anything else: the secret itself (fine for a demo, not for a fleet).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated

from pydantic import BeforeValidator, SecretStr, ValidationInfo


def resolve_secret(value: object, info: ValidationInfo) -> object:
    if isinstance(value, SecretStr) or not isinstance(value, str):
        return value
    # The loader passes its environment, so that tests need not touch os.environ.
    environ = (info.context or {}).get("environ", os.environ)
    if value.startswith("credential:"):
        name = value.removeprefix("credential:")
        if not _CREDENTIAL_NAME.fullmatch(name):
            raise ValueError(
                f"credential name {name[:40]!r} must be a file name in $CREDENTIALS_DIRECTORY "
                "(letters, digits, '_', '.', '-'; no '/')"
            )
        directory = environ.get("CREDENTIALS_DIRECTORY")
        if not directory:
            raise ValueError(
                f"refers to credential {name!r} but $CREDENTIALS_DIRECTORY is not set "
                "(run under systemd with LoadCredential=, or use file:/path)"
            )
        plain, packaged = Path(directory) / name, Path(directory) / f"vspd_{name}"
        return _read(packaged if not plain.exists() and packaged.exists() else plain)
    if value.startswith("file:"):
        return _read(Path(value.removeprefix("file:")))
    return value


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


Secret = Annotated[SecretStr, BeforeValidator(resolve_secret)]
