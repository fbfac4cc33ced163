"""Writing vspd configurations as TOML (the demo writes one; tests write many).

Covers what vspd's model needs: tables, arrays of tables, nested tables,
scalars, and lists of scalars or of lists.
"""

from __future__ import annotations

import json
from typing import Any


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a valid TOML basic string
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(item) for item in value) + "]"
    raise TypeError(f"cannot write {type(value).__name__} as TOML")


def _is_tables(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(item, dict) for item in value)


def render_toml(data: dict[str, Any]) -> str:
    lines: list[str] = []

    def table(prefix: str, body: dict[str, Any], header: str) -> None:
        lines.append(header)
        for key, value in body.items():
            if not isinstance(value, dict) and not _is_tables(value):
                lines.append(f"{key} = {toml_value(value)}")
        for key, value in body.items():
            if isinstance(value, dict):
                table(f"{prefix}.{key}", value, f"[{prefix}.{key}]")
            elif _is_tables(value):
                for item in value:
                    table(f"{prefix}.{key}", item, f"[[{prefix}.{key}]]")

    for section, body in data.items():
        if _is_tables(body):
            for item in body:
                table(section, item, f"[[{section}]]")
        else:
            table(section, body, f"[{section}]")
    return "\n".join(lines) + "\n"
