"""Names that refer to other names: camera ids, rule and sink names, and where rules point.

Checked on the data as written rather than on the validated model: pydantic runs
a model's own validators only when all of its fields are valid, so a duplicate
camera id would stay hidden behind a typo elsewhere. Here every reference
problem comes with the field problems, in one report.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any


def reference_problems(data: dict[str, Any]) -> list[tuple[str, str]]:
    """(key path, message) for each reference that cannot work."""
    return list(_problems(data))


def _problems(data: dict[str, Any]) -> Iterator[tuple[str, str]]:
    cameras = _items(data.get("cameras"))
    section = data.get("alerts")
    alerts: dict[str, Any] = section if isinstance(section, dict) else {}
    rules = _items(alerts.get("rules"))
    sinks = _items(alerts.get("sinks"))
    yield from _duplicates("camera", "cameras", cameras, "id")
    yield from _duplicates("rule", "alerts.rules", rules, "name")
    yield from _duplicates("sink", "alerts.sinks", sinks, "name")
    camera_ids = _names(cameras, "id")
    sink_names = _names(sinks, "name")
    for index, rule in rules:
        name = rule.get("name")
        where = f"alerts.rules[{name if isinstance(name, str) and name else index}]"
        shown = repr(name) if isinstance(name, str) else f"number {index}"
        for sink in _strings(rule.get("sinks")):
            if sink not in sink_names:
                yield f"{where}.sinks", f"rule {shown} names sink {sink!r}, which is not configured"
        # A config without [[cameras]] (an alerts host that learns cameras from
        # the results) cannot tell a typo; one that lists them can.
        for camera in _strings(rule.get("cameras")) if camera_ids else []:
            if camera not in camera_ids:
                known = ", ".join(sorted(camera_ids))
                yield (
                    f"{where}.cameras",
                    f"rule {shown} names camera {camera!r}, which is not in [[cameras]] "
                    f"(configured: {known})",
                )


def _items(value: Any) -> list[tuple[int, dict[str, Any]]]:
    if not isinstance(value, list):
        return []
    return [(index, item) for index, item in enumerate(value) if isinstance(item, dict)]


def _names(items: list[tuple[int, dict[str, Any]]], key: str) -> set[str]:
    return {item[key] for _index, item in items if isinstance(item.get(key), str)}


def _strings(value: Any) -> list[str]:
    return [item for item in value if isinstance(item, str)] if isinstance(value, list) else []


def _duplicates(
    kind: str, path: str, items: list[tuple[int, dict[str, Any]]], key: str
) -> Iterator[tuple[str, str]]:
    seen: set[str] = set()
    for index, item in items:
        name = item.get(key)
        if not isinstance(name, str):
            continue
        if name in seen:
            yield f"{path}[{index}].{key}", f"{kind} {name!r} is defined twice"
        seen.add(name)
