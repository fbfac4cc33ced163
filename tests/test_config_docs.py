"""The configuration is documented in one place, `vspd config example`, and nothing drifts from it.

Every key of the model appears in the example (active, or commented out) in
its own table, showing the model's default wherever it shows a value for a
table that is not a list of examples; the Ansible role's argument specs are
generated from the model and the example (scripts/argument_specs.py) and must
be what the generator gives today.
"""

from __future__ import annotations

import re
import tomllib
import typing
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, SecretStr
from pydantic_core import PydanticUndefined

from vspd.cli import example_config
from vspd.config import model

ROOT = Path(__file__).parent.parent
# Tables that hold examples to copy, not defaults: only that every key is shown.
EXAMPLE_TABLES = {"cameras", "alerts.rules", "alerts.sinks"}
_HEADER = re.compile(r"^#?\s*\[\[?([a-z_.]+)\]\]?\s*(#.*)?$")
_KEY = re.compile(r'^#?\s*"?([a-z_]+)"?\s*=\s*(.*)$')


def documented() -> dict[str, dict[str, list[Any]]]:
    """table -> key -> the values the example shows for it (None where unreadable)."""
    tables: dict[str, dict[str, list[Any]]] = {}
    current = ""
    for line in example_config().splitlines():
        header = _HEADER.match(line)
        if header:
            current = header.group(1)
            tables.setdefault(current, {})
            continue
        key = _KEY.match(line)
        if key:
            try:
                value = tomllib.loads(f"v = {key.group(2)}")["v"]
            except tomllib.TOMLDecodeError:
                value = None
            tables.setdefault(current, {}).setdefault(key.group(1), []).append(value)
    return tables


def models_in(annotation: Any) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [found for argument in typing.get_args(annotation) for found in models_in(argument)]


def leaves(section: type[BaseModel], table: str) -> list[tuple[str, str, Any]]:
    """(table, key, default) of every key, tables of tables followed."""
    found: list[tuple[str, str, Any]] = []
    for name, field in section.model_fields.items():
        children = models_in(field.annotation)
        if children:
            for child in children:
                found += leaves(child, f"{table}.{name}" if table else name)
            continue
        default = field.default
        if field.default_factory is not None:
            default = field.default_factory()  # type: ignore[call-arg]
        found.append((table, name, default))
    return found


def comparable(value: Any) -> Any:
    if isinstance(value, tuple):
        return [comparable(item) for item in value]
    if isinstance(value, list):
        return [comparable(item) for item in value]
    return value


KEYS = sorted(
    {(table, key): default for table, key, default in leaves(model.VspdConfig, "")}.items()
)
KEYS = [(table, key, default) for (table, key), default in KEYS]


@pytest.mark.parametrize(("table", "key", "default"), KEYS, ids=[f"{t}.{k}" for t, k, _ in KEYS])
def test_every_key_is_in_the_example_with_its_default(table: str, key: str, default: Any) -> None:
    tables = documented()
    shown = tables.get(table, {})
    if key == "librdkafka":
        assert f"{table}.librdkafka" in tables, "no [kafka.librdkafka] in the example"
        return
    assert key in shown, f"{table}.{key} is not in `vspd config example`"
    if table in EXAMPLE_TABLES or default is PydanticUndefined or default is None:
        return
    if isinstance(default, SecretStr):
        return
    values = [value for value in shown[key] if value is not None]
    assert comparable(default) in values, (
        f"{table}.{key}: example shows {values}, default {default!r}"
    )


def test_the_roles_argument_specs_are_generated_from_the_model_and_the_example() -> None:
    import subprocess
    import sys

    run = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "argument_specs.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    specs = (ROOT / "ansible/roles/vspd/meta/argument_specs.yml").read_text()
    # Spot checks of what the generator must have carried over.
    assert "max_buffered_bytes:" in specs
    assert "default: 134217728" in specs
    assert "no_log: true" in specs  # secrets stay out of Ansible's output


def test_the_readmes_object_rules_can_be_copied_as_they_are(tmp_path: Path) -> None:
    from vspd.config import load_config

    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("### Rules over objects") :]
    block = section[section.index("```toml\n") + len("```toml\n") : section.index("```\n", 10)]
    path = tmp_path / "vspd.toml"
    path.write_text(block)
    config = load_config(path, {})
    assert [rule.trigger for rule in config.alerts.rules] == ["loiter", "enter", "cross"]
