"""Rules decide alone (no Kafka needed): debounce, cooldown, zones, anchors, quiet hours, templates."""

from __future__ import annotations

from datetime import datetime, time
from typing import Any

import pytest

from tests.support.results import SECOND, result
from vspd.alerts.rules import RuleState, build_rules, in_quiet_hours, point_in_polygon
from vspd.config.model import RuleConfig

PERSON = ("person", 0.9, (0.4, 0.5, 0.6, 0.9))
T0 = int(datetime(2026, 11, 25, 12, 0).astimezone().timestamp() * SECOND)


def run(
    config: dict[str, Any], frames: list[tuple[float, list[Any]]], camera: str = "door"
) -> list[int]:
    """Feed (seconds after T0, detections) frames; return the seqs that raised an alert."""
    (rule,) = build_rules([RuleConfig(name="r", **config)])
    state = RuleState()
    fired = []
    for seq, (offset, detections) in enumerate(frames):
        if rule.applies_to(camera) and rule.evaluate(
            result(camera, seq, detections, at_ns=T0 + int(offset * SECOND)), state, ""
        ):
            fired.append(seq)
    return fired


def test_one_alert_per_event_not_per_frame() -> None:
    frames = [(i * 0.1, [PERSON]) for i in range(20)]
    assert run({"min_frames": 1, "cooldown_s": 60}, frames) == [0]


def test_debounce_needs_min_frames_within_the_window() -> None:
    sparse = [(0, [PERSON]), (3, [PERSON]), (6, [PERSON]), (9, [PERSON])]
    assert run({"min_frames": 2, "window_s": 2.0}, sparse) == []
    dense = [(0, [PERSON]), (0.5, []), (1.0, [PERSON])]
    assert run({"min_frames": 2, "window_s": 2.0}, dense) == [2]


def test_cooldown_per_rule_and_camera() -> None:
    frames = [(0, [PERSON]), (30, [PERSON]), (61, [PERSON]), (62, [PERSON])]
    assert run({"cooldown_s": 60}, frames) == [0, 2]


def test_labels_confidence_and_cameras_filter() -> None:
    cat = ("cat", 0.95, (0.1, 0.1, 0.2, 0.2))
    weak = ("person", 0.3, (0.1, 0.1, 0.2, 0.2))
    assert run({"labels": ["person"], "min_confidence": 0.5}, [(0, [cat]), (1, [weak])]) == []
    assert run({"labels": ["person"], "min_confidence": 0.5}, [(0, [cat, PERSON])]) == [0]
    assert run({"cameras": ["yard"]}, [(0, [PERSON])], camera="door") == []


def test_zone_uses_the_bottom_centre_by_default() -> None:
    lower_half = [[(0.0, 0.5), (1.0, 0.5), (1.0, 1.0), (0.0, 1.0)]]
    feet_in_zone = ("person", 0.9, (0.4, 0.1, 0.6, 0.7))  # box mostly above, feet below y=0.5
    head_only = ("person", 0.9, (0.4, 0.0, 0.6, 0.3))
    assert run({"zones": lower_half}, [(0, [head_only])]) == []
    assert run({"zones": lower_half}, [(0, [feet_in_zone])]) == [0]
    assert run({"zones": lower_half, "anchor": "top_center"}, [(0, [feet_in_zone])]) == []


def test_point_in_polygon_with_a_concave_zone() -> None:
    l_shape = [(0, 0), (1, 0), (1, 0.4), (0.4, 0.4), (0.4, 1), (0, 1)]
    assert point_in_polygon(0.2, 0.8, l_shape)
    assert point_in_polygon(0.8, 0.2, l_shape)
    assert not point_in_polygon(0.8, 0.8, l_shape)


def test_quiet_hours_including_across_midnight() -> None:
    night = [(time(22, 0), time(6, 0))]
    assert in_quiet_hours(time(23, 30), night)
    assert in_quiet_hours(time(5, 59), night)
    assert not in_quiet_hours(time(6, 0), night)
    assert not in_quiet_hours(time(12, 0), night)
    lunch = [(time(12, 0), time(13, 0))]
    assert in_quiet_hours(time(12, 30), lunch)


def test_no_alert_during_quiet_hours() -> None:
    # T0 is 12:00 local time.
    assert run({"quiet_hours": ["11:00-13:00"]}, [(0, [PERSON])]) == []
    assert run({"quiet_hours": ["13:00-14:00"]}, [(0, [PERSON])]) == [0]


def test_message_template_gets_the_event() -> None:
    (rule,) = build_rules(
        [
            RuleConfig(
                name="porch",
                message="{{ label }}@{{ camera }} x{{ count }} {{ '%.0f' % (confidence * 100) }}% {{ snapshot_url }} {{ severity }}",
            )
        ]
    )
    trigger = rule.evaluate(result("door", 1, [PERSON], at_ns=T0), RuleState(), "http://nvr/s.jpg")
    assert trigger is not None
    assert trigger.message == "person@door x1 90% http://nvr/s.jpg warning"


@pytest.mark.parametrize(
    ("rule", "expected"),
    [
        ('name = "bad name!"', "alerts.rules[bad name!].name: String should match pattern"),
        (
            'name = "r"\nmin_frames = 0',
            "alerts.rules[r].min_frames: Input should be greater than or equal to 1",
        ),
        (
            'name = "r"\nanchor = "feet"',
            "alerts.rules[r].anchor: Input should be 'bottom_center', 'center' or 'top_center'",
        ),
        (
            'name = "r"\nzones = [[[0.1, 0.1], [0.2, 0.2]]]',
            "alerts.rules[r].zones: zone 0 needs at least 3 points, has 2",
        ),
        (
            'name = "r"\nseverity = "urgent"',
            "alerts.rules[r].severity: Input should be 'info', 'warning' or 'critical'",
        ),
        (
            'name = "r"\nlabel = ["person"]',
            "alerts.rules[r].label: unknown key 'label'; did you mean 'labels'?",
        ),
    ],
)
def test_bad_rule_config_names_the_rule(tmp_path: Any, rule: str, expected: str) -> None:
    from vspd.config import ConfigError, load_config

    path = tmp_path / "vspd.toml"
    path.write_text(f"[[alerts.rules]]\n{rule}\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path, {})
    assert any(
        str(problem).startswith(f"{path}: {expected}") for problem in caught.value.problems
    ), caught.value.problems
