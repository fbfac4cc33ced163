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


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8").rstrip("\r\n")
    except FileNotFoundError:
        raise ValueError(f"secret file {str(path)!r} does not exist") from None
    except OSError as exc:
        raise ValueError(f"secret file {str(path)!r} cannot be read: {exc.strerror}") from None


Secret = Annotated[SecretStr, BeforeValidator(resolve_secret)]
