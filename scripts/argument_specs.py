#!/usr/bin/env python3
"""Write the Ansible role's argument specs for the configuration sections, from the model.

The keys, their types, choices and defaults come from vspd.config.model; the
descriptions from the comments of `vspd config example`. So the configuration
is documented once and the role's specs cannot drift (tests/test_config_docs.py
runs this with --check). Run it after changing the model or the example:

    .venv/bin/python scripts/argument_specs.py
"""

from __future__ import annotations

import argparse
import re
import sys
import types
import typing
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, SecretStr
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from vspd.cli import example_config
from vspd.config import model

SPECS = Path(__file__).resolve().parent.parent / "ansible/roles/vspd/meta/argument_specs.yml"
# Role variable -> (table in vspd.toml, model of one entry, kind).
SECTIONS: dict[str, tuple[str, type[BaseModel], str]] = {
    "vspd_kafka": ("kafka", model.KafkaConfig, "dict"),
    "vspd_cameras": ("cameras", model.CameraConfig, "list"),
    "vspd_capture": ("capture", model.CaptureConfig, "dict"),
    "vspd_broker": ("broker", model.BrokerConfig, "dict"),
    "vspd_processor": ("processor", model.ProcessorConfig, "dict"),
    "vspd_alerts": ("alerts", model.AlertsConfig, "dict"),
    "vspd_tracking": ("tracking", model.TrackingConfig, "dict"),
    "vspd_web": ("web", model.WebConfig, "dict"),
    "vspd_metrics": ("metrics", model.MetricsConfig, "dict"),
    "vspd_logging": ("logging", model.LoggingConfig, "dict"),
}
_HEADER = re.compile(r"^#?\s*\[\[?([a-z_.]+)\]\]?")
_KEY = re.compile(r'^#?\s*"?([a-z_]+)"?\s*=\s*(?:"(?:[^"\\]|\\.)*"|[^#]*?)\s*#\s*(.+)$')


def comments() -> dict[tuple[str, str], str]:
    """(table, key) -> the example's comment on it."""
    found: dict[tuple[str, str], str] = {}
    table = ""
    for line in example_config().splitlines():
        header = _HEADER.match(line)
        if header:
            table = header.group(1)
            continue
        key = _KEY.match(line)
        if key and (table, key.group(1)) not in found:
            found[(table, key.group(1))] = key.group(2).strip()
    return found


def _plain(annotation: Any) -> Any:
    """`X | None` -> X; Annotated[X, ...] -> X."""
    while typing.get_origin(annotation) is typing.Annotated:
        annotation = typing.get_args(annotation)[0]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        rest = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(rest) == 1:
            return _plain(rest[0])
    return annotation


def _models(annotation: Any) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [found for argument in typing.get_args(annotation) for found in _models(argument)]


def _type(annotation: Any) -> dict[str, Any]:
    annotation = _plain(annotation)
    origin = typing.get_origin(annotation)
    if origin is Literal:
        choices = list(typing.get_args(annotation))
        return (
            {"type": "str", "choices": choices} if all(isinstance(c, str) for c in choices) else {}
        )
    if annotation is bool:
        return {"type": "bool"}
    if annotation is int:
        return {"type": "int"}
    if annotation is float:
        return {"type": "float"}
    if annotation is str:
        return {"type": "str"}
    if isinstance(annotation, type) and issubclass(annotation, SecretStr):
        return {"type": "str", "no_log": True}
    if origin in (list, tuple):
        return {"type": "list"}
    if origin is dict:
        return {"type": "dict"}
    return {"type": "raw"}


def _default(field: FieldInfo) -> Any:
    factory = field.default_factory
    value = factory() if factory is not None else field.default  # type: ignore[call-arg]
    if value is PydanticUndefined or value is None or isinstance(value, SecretStr):
        return PydanticUndefined
    if isinstance(value, tuple):
        return list(value)
    if isinstance(value, BaseModel):
        return PydanticUndefined  # a table: its keys carry their defaults
    return value


def _jinja(value: Any) -> bool:
    return isinstance(value, str) and ("{{" in value or "{%" in value)


def options(
    sections: list[type[BaseModel]], table: str, notes: dict[tuple[str, str], str]
) -> dict[str, Any]:
    """Every key of one table; several models (sink types) are merged, required in all only."""
    merged: dict[str, Any] = {}
    required_in: dict[str, int] = {}
    for section in sections:
        for name, field in section.model_fields.items():
            required_in[name] = required_in.get(name, 0) + int(field.is_required())
            if name in merged:
                more = _type(field.annotation).get("choices", [])
                known = merged[name].get("choices")
                if known is not None:
                    known.extend(choice for choice in more if choice not in known)
                continue
            children = _models(_plain(field.annotation))
            spec: dict[str, Any] = {}
            note = notes.get((table, name), "")
            spec["description"] = note or f"[{table}] {name}; see `vspd config example`."
            if children:
                child_table = f"{table}.{name}"
                is_list = typing.get_origin(_plain(field.annotation)) is list
                spec["type"] = "list" if is_list else "dict"
                if is_list:
                    spec["elements"] = "dict"
                spec["options"] = options(children, child_table, notes)
                if not is_list:
                    spec["default"] = {}
                else:
                    spec["default"] = []
            else:
                spec.update(_type(field.annotation))
                default = _default(field)
                # Ansible templates the specs: a Jinja message template cannot be a default there.
                if default is not PydanticUndefined and not _jinja(default):
                    spec["default"] = default
            merged[name] = spec
    for name, count in required_in.items():
        if count == len(sections):
            merged[name]["required"] = True
            merged[name].pop("default", None)
    return merged


def generate(current: dict[str, Any]) -> dict[str, Any]:
    notes = comments()
    specs = current["argument_specs"]["main"]["options"]
    for variable, (table, section, kind) in SECTIONS.items():
        spec = specs[variable]
        spec["type"] = kind
        if kind == "list":
            spec["elements"] = "dict"
        spec["options"] = options([section], table, notes)
    return current


class _IndentedLists(yaml.SafeDumper):
    """Lists indented under their key, as yamllint (ansible-lint) wants them."""

    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
        super().increase_indent(flow, False)


def render(data: dict[str, Any]) -> str:
    text = yaml.dump(data, Dumper=_IndentedLists, sort_keys=False, width=100, allow_unicode=True)
    return "---\n# The vspd_<section> options are generated: scripts/argument_specs.py\n" + text


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--check", action="store_true", help="exit 1 if the file is not current")
    args = parser.parse_args()
    current_text = SPECS.read_text()
    wanted = render(generate(yaml.safe_load(current_text)))
    if args.check:
        if wanted != current_text:
            print(
                f"{SPECS} is not what scripts/argument_specs.py generates: run it", file=sys.stderr
            )
            return 1
        return 0
    SPECS.write_text(wanted)
    return 0


if __name__ == "__main__":
    sys.exit(main())
