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


def test_the_default_message_says_when_it_was_captured() -> None:
    # A late delivery must not read as "now": the capture time is in the text itself.
    (rule,) = build_rules([RuleConfig(name="porch")])
    trigger = rule.evaluate(result("door", 1, [PERSON], at_ns=T0 + 5 * SECOND), RuleState(), "")
    assert trigger is not None
    assert trigger.message == "person on door at 12:00:05 (1 frame, 90%)"


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


# -- rules over objects ------------------------------------------------------------
def tracked(label: str, track_id: int, box: tuple[float, float, float, float]) -> Any:
    return (label, 0.9, box, track_id)


def run_objects(
    config: dict[str, Any], frames: list[tuple[float, list[Any]]]
) -> list[tuple[int, int, str, float]]:
    """Feed frames of (label, confidence, box, track id); (seq, track, direction, dwell) fired."""
    from vspd.alerts.rules import ObjectState

    (rule,) = build_rules([RuleConfig(name="r", **config)])
    objects: dict[int, ObjectState] = {}
    fired = []
    for seq, (offset, detections) in enumerate(frames):
        frame = result("yard", seq, [d[:3] for d in detections], at_ns=T0 + int(offset * SECOND))
        for detection, (*_rest, track_id) in zip(frame.detections, detections, strict=True):
            detection.track_id = track_id
        for trigger in rule.evaluate_objects(frame, objects, lambda _track: ""):
            assert trigger.track_id is not None
            fired.append((seq, trigger.track_id, trigger.crossed_to, trigger.dwell_s or 0.0))
    return fired


LOT = [[(0.0, 0.5), (0.5, 0.5), (0.5, 1.0), (0.0, 1.0)]]
PARKED = (0.1, 0.6, 0.3, 0.8)  # its bottom centre (0.2, 0.8) is inside LOT


def test_a_stationary_object_loiters_once_however_long_it_stays() -> None:
    # A car parked for two hours of capture time, one frame a second; a second car
    # arrives after an hour and stays too: exactly one alert each.
    frames = []
    for second in range(2 * 3600):
        cars = [tracked("car", 7, PARKED)]
        if second >= 3600:
            cars.append(tracked("car", 8, (0.3, 0.6, 0.45, 0.85)))
        frames.append((float(second), cars))
    fired = run_objects({"trigger": "loiter", "zones": LOT, "min_dwell_s": 30.0}, frames)
    assert [(seq, track) for seq, track, _d, _s in fired] == [(30, 7), (3630, 8)]
    assert all(dwell >= 30.0 for *_x, dwell in fired)


def test_enter_alerts_once_per_object_entering_a_zone() -> None:
    outside, inside = (0.7, 0.1, 0.8, 0.3), PARKED
    frames = [
        (0.0, [tracked("person", 1, outside)]),
        (1.0, [tracked("person", 1, inside)]),  # enters
        (2.0, [tracked("person", 1, outside)]),  # leaves
        (3.0, [tracked("person", 1, inside), tracked("person", 2, inside)]),  # back; a second
        (4.0, [tracked("person", 1, inside), tracked("person", 2, inside)]),
    ]
    fired = run_objects({"trigger": "enter", "zones": LOT}, frames)
    assert [(seq, track) for seq, track, _d, _s in fired] == [(1, 1), (3, 2)]


def test_crossings_are_told_apart_by_direction() -> None:
    # A vertical line x = 0.5 from top (0.5, 0) to bottom (0.5, 1): walking it from the
    # first point to the second, the image's left (x < 0.5) is on the right hand.
    line = [(0.5, 0.0), (0.5, 1.0)]

    def walk(track: int, start_x: float, end_x: float, t0: float) -> list[tuple[float, list[Any]]]:
        steps = 10
        return [
            (
                t0 + i * 0.1,
                [tracked("person", track, (x - 0.05, 0.4, x + 0.05, 0.6))],
            )
            for i in range(steps + 1)
            for x in [start_x + (end_x - start_x) * i / steps]
        ]

    frames = walk(1, 0.2, 0.8, 0.0) + walk(2, 0.8, 0.2, 10.0) + walk(3, 0.3, 0.45, 20.0)
    both = run_objects({"trigger": "cross", "line": line}, frames)
    assert sorted((track, direction) for _s, track, direction, _d in both) == [
        (1, "left"),
        (2, "right"),
    ]  # track 3 never reaches the line
    only_left = run_objects({"trigger": "cross", "line": line, "direction": "left"}, frames)
    assert [track for _s, track, _d, _x in only_left] == [1]
    # Beside the segment (above its top end) is not across it.
    short = [(0.5, 0.7), (0.5, 1.0)]
    assert run_objects({"trigger": "cross", "line": short}, frames) == []


def test_object_rules_need_a_line_only_for_crossing() -> None:
    with pytest.raises(ValueError, match="needs a line"):
        RuleConfig(name="x", trigger="cross")
    with pytest.raises(ValueError, match="only for trigger"):
        RuleConfig(name="x", trigger="enter", line=[(0, 0), (1, 1)])


def test_a_flood_of_track_ids_keeps_object_state_bounded() -> None:
    from vspd.alerts.rules import MAX_OBJECTS, ObjectState, forget_stale

    objects = {track: ObjectState(T0, T0 + track) for track in range(5000)}
    forgotten = forget_stale(objects, T0 + 5000)
    assert len(objects) == MAX_OBJECTS
    assert len(forgotten) == 5000 - MAX_OBJECTS
    assert min(objects) == 5000 - MAX_OBJECTS  # the most recently seen are kept
