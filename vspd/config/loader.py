"""Reading the TOML file, applying environment overrides, and reporting problems.

Every problem names where it comes from (the file or the environment
variable), the key path, and what is wrong; all problems are reported at once.
"""

from __future__ import annotations

import difflib
import os
import tomllib
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from vspd.config.model import CONTEXT_CONFIG_DIR, VspdConfig
from vspd.config.references import reference_problems
from vspd.config.secrets import CONTEXT_CREDENTIALS_ROOT, CONTEXT_SCOPES, Scope
from vspd.errors import VspdError

DEFAULT_CONFIG_PATH = Path("/etc/vspd/vspd.toml")
ENV_PREFIX = "VSPD_"
# Scalar keys set from the environment: VSPD_<SECTION>__<KEY>, nested tables
# with more "__" (VSPD_PROCESSOR__MOTION__MIN_AREA). Lists take TOML syntax.
_ENV_SEPARATOR = "__"


@dataclass(frozen=True)
class ConfigProblem:
    origin: str  # the file, or "environment VSPD_..."
    key: str  # dotted key path, "" for the whole file
    message: str

    def __str__(self) -> str:
        where = f"{self.origin}: {self.key}" if self.key else self.origin
        return f"{where}: {self.message}"


class ConfigError(VspdError):
    """The configuration is not valid; ``problems`` lists every reason."""

    def __init__(self, problems: list[ConfigProblem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(problem) for problem in problems))


def load_config(
    path: Path | None = None,
    environ: Mapping[str, str] | None = None,
    secret_scopes: Collection[Scope] | None = None,
    credentials_root: Path | None = None,
) -> VspdConfig:
    """Load and validate the configuration; raises ConfigError listing every problem.

    ``path`` None means the default file. The file must exist: a daemon that
    quietly ran on built-in defaults because of a typo in a path would point at
    the wrong Kafka. ``secret_scopes`` are the secrets to read (a daemon's own,
    DAEMON_SCOPES); None reads all of them. ``credentials_root`` replaces
    /etc/vspd/credentials (where credentials are looked up outside systemd).
    """
    environ = os.environ if environ is None else environ
    path = path or DEFAULT_CONFIG_PATH
    data = _read_toml(path)
    env_origins = _apply_environment(data, environ)
    references = [
        ConfigProblem(str(path), key, message) for key, message in reference_problems(data)
    ]
    context: dict[str, Any] = {"environ": environ, CONTEXT_CONFIG_DIR: path.absolute().parent}
    if secret_scopes is not None:
        context[CONTEXT_SCOPES] = frozenset(secret_scopes)
    if credentials_root is not None:
        context[CONTEXT_CREDENTIALS_ROOT] = credentials_root
    try:
        config = VspdConfig.model_validate(data, context=context)
    except ValidationError as exc:
        raise ConfigError(_problems(exc, str(path), env_origins, data) + references) from None
    if references:
        raise ConfigError(references)
    return config


MAX_CONFIG_BYTES = 1024 * 1024


def _read_toml(path: Path) -> dict[str, Any]:
    """The file as TOML, or one clear problem: never a traceback, never a hang."""

    def problem(reason: str) -> ConfigError:
        return ConfigError([ConfigProblem(str(path), "", reason)])

    try:
        if path.exists() and not path.is_file():
            raise problem("is not a regular file")  # a FIFO or device would block
        with path.open("rb") as handle:
            raw = handle.read(MAX_CONFIG_BYTES + 1)
    except FileNotFoundError:
        raise problem("file does not exist") from None
    except OSError as exc:
        raise problem(f"cannot be read: {exc.strerror}") from None
    if len(raw) > MAX_CONFIG_BYTES:
        raise problem(f"is larger than {MAX_CONFIG_BYTES} bytes")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise problem(f"is not UTF-8 text (byte {exc.start})") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise problem(f"not valid TOML: {exc}") from None
    except RecursionError:
        raise problem("not valid TOML: nested too deeply") from None


def _apply_environment(data: dict[str, Any], environ: Mapping[str, str]) -> dict[str, str]:
    """Overlay VSPD_<SECTION>__<KEY> variables; returns dotted key -> variable name."""
    origins: dict[str, str] = {}
    for name in sorted(environ):
        if not name.startswith(ENV_PREFIX) or _ENV_SEPARATOR not in name:
            continue
        parts = [part.lower() for part in name.removeprefix(ENV_PREFIX).split(_ENV_SEPARATOR)]
        if any(not part for part in parts):
            continue
        table = data
        for part in parts[:-1]:
            child = table.setdefault(part, {})
            if not isinstance(child, dict):
                break
            table = child
        else:
            table[parts[-1]] = _env_value(environ[name])
            origins[".".join(parts)] = name
    return origins


def _env_value(raw: str) -> Any:
    # Scalars stay strings (pydantic converts "8" to 8 where an int is wanted,
    # and a topic named "8" stays "8"); a list is written in TOML syntax.
    stripped = raw.strip()
    if stripped.startswith("["):
        try:
            return tomllib.loads(f"value = {stripped}")["value"]
        except (tomllib.TOMLDecodeError, RecursionError):
            return raw
    return raw


def _problems(
    exc: ValidationError, origin: str, env_origins: dict[str, str], data: dict[str, Any]
) -> list[ConfigProblem]:
    problems = []
    for error in exc.errors(include_url=False):
        key = _key_path(error["loc"], data)
        dotted = ".".join(str(part) for part in error["loc"] if isinstance(part, str))
        where = f"environment {env_origins[dotted]}" if dotted in env_origins else origin
        problems.append(ConfigProblem(where, key, _message(error)))
    return problems


_SINK_TAGS = {"webhook", "mqtt", "email", "ntfy", "apprise", "log"}


def _key_path(loc: tuple[int | str, ...], data: dict[str, Any]) -> str:
    """`cameras[front].fps`: items of arrays of tables are named by their id or name."""
    path = ""
    node: Any = data
    for index, part in enumerate(loc):
        node = node[part] if _has(node, part) else None
        if isinstance(part, int):
            name = node.get("id", node.get("name")) if isinstance(node, dict) else None
            path += f"[{name}]" if isinstance(name, str) and name else f"[{part}]"
        elif part in _SINK_TAGS and index > 0 and isinstance(loc[index - 1], int):
            continue  # pydantic's union tag, not a key the user wrote
        else:
            path += f".{part}" if path else part
    return path


def _has(node: Any, part: int | str) -> bool:
    if isinstance(node, dict):
        return part in node
    return isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node)


def _message(error: Any) -> str:
    kind = error["type"]
    if kind == "extra_forbidden":
        name = str(error["loc"][-1])
        close = difflib.get_close_matches(name, _keys_at(error["loc"][:-1]), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        return f"unknown key {name!r}{hint}"
    if kind == "missing":
        return "required key is missing"
    message = str(error["msg"])
    message = message.removeprefix("Value error, ")
    if kind not in ("value_error", "assertion_error") and "input" in error:
        shown = error["input"]
        names = {str(part) for part in error["loc"] if isinstance(part, str)}
        if not isinstance(shown, dict | list) and not names & _NEVER_ECHOED:
            text = repr(shown)
            message += f" (got {text[:80]}{'…' if len(text) > 80 else ''})"
    return message


# Keys whose values may be secrets or carry one (tokens in URLs): never echoed.
_NEVER_ECHOED = {
    "password",
    "sasl_password",
    "ssl_key_password",
    "secret",
    "token",
    "url",
    "urls",
    "source",
    "bootstrap_servers",
    "username",
    "sasl_username",
}


def _keys_at(loc: tuple[int | str, ...]) -> list[str]:
    """The keys allowed in the table at `loc`, for "did you mean" hints."""
    models: list[type[BaseModel]] = [VspdConfig]
    for part in loc:
        if isinstance(part, int):
            continue  # an item of an array of tables
        fields = [model.model_fields[part] for model in models if part in model.model_fields]
        if fields:
            models = [found for field in fields for found in _models_in(field.annotation)]
    return sorted({name for model in models for name in model.model_fields})


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    found: list[type[BaseModel]] = []
    for argument in getattr(annotation, "__args__", ()):
        found.extend(_models_in(argument))
    for meta in getattr(annotation, "__metadata__", ()):
        found.extend(_models_in(meta))
    origin = getattr(annotation, "__origin__", None)
    if origin is not None and getattr(annotation, "__metadata__", None):
        found.extend(_models_in(origin))
    return found
