"""Rules over results: which detections count, debounce, cooldown, quiet hours; and
rules over objects (tracks): enter, loiter, cross, each once per track.

Time is the frame's capture time, not the clock at processing: a replay or a
backlog gives the same decisions as live processing would have. Object rules
need the broker's track ids (or a processor's own); a detection without one
takes no part in them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, time
from typing import Any

from jinja2.sandbox import SandboxedEnvironment

from vspd.config.model import RuleConfig
from vspd.v1 import result_pb2

NS = 1_000_000_000


def point_in_polygon(x: float, y: float, polygon: list[tuple[float, float]]) -> bool:
    """Ray casting; points on an edge may fall either way, which is fine for zones."""
    inside = False
    count = len(polygon)
    for index in range(count):
        x1, y1 = polygon[index]
        x2, y2 = polygon[(index + 1) % count]
        if (y1 > y) != (y2 > y):
            crossing = x1 + (y - y1) * (x2 - x1) / (y2 - y1)
            if x < crossing:
                inside = not inside
    return inside


def anchor_point(box: result_pb2.Box, anchor: str) -> tuple[float, float]:
    x = (box.x_min + box.x_max) / 2
    if anchor == "bottom_center":
        return x, box.y_max
    if anchor == "top_center":
        return x, box.y_min
    return x, (box.y_min + box.y_max) / 2


def in_quiet_hours(moment: time, spans: list[tuple[time, time]]) -> bool:
    for start, end in spans:
        if start <= end:
            if start <= moment < end:
                return True
        elif moment >= start or moment < end:  # the span crosses midnight
            return True
    return False


@dataclass
class RuleState:
    """Per (rule, camera): capture times of recent matching frames, last alert."""

    matches: list[int] = field(default_factory=list)
    last_alert_ns: int | None = None
    dirty: bool = False


@dataclass
class ObjectState:
    """Per (rule, camera, track): where the object was and whether it has alerted."""

    first_seen_ns: int
    last_seen_ns: int
    inside_since_ns: int | None = None  # in a zone since (capture time)
    last_point: tuple[float, float] | None = None
    alerted: bool = False
    dirty: bool = True


# A track unseen this long (capture time) is over: its state is forgotten.
OBJECT_STATE_TTL_NS = 10 * 60 * NS
# Objects kept per (rule, camera): a flood of track ids (a forged result) is bounded.
MAX_OBJECTS = 1024


@dataclass(frozen=True)
class Trigger:
    rule: RuleConfig
    label: str
    confidence: float
    count: int
    detections: list[dict[str, Any]]
    message: str
    track_id: int | None = None
    dwell_s: float | None = None
    crossed_to: str = ""  # cross: "left" or "right" of the line


class Rule:
    def __init__(self, config: RuleConfig, environment: SandboxedEnvironment) -> None:
        self.config = config
        self.template = environment.from_string(config.message)
        self.quiet = config.quiet_spans()

    def applies_to(self, camera: str) -> bool:
        return not self.config.cameras or camera in self.config.cameras

    def matching(self, result: result_pb2.Result) -> list[result_pb2.Detection]:
        config = self.config
        found = []
        for detection in result.detections:
            if config.labels and detection.label not in config.labels:
                continue
            if detection.confidence < config.min_confidence:
                continue
            if config.zones:
                x, y = anchor_point(detection.box, config.anchor)
                if not any(point_in_polygon(x, y, zone) for zone in config.zones):
                    continue
            found.append(detection)
        return found

    def evaluate(
        self, result: result_pb2.Result, state: RuleState, snapshot_url: str
    ) -> Trigger | None:
        """Update the state with this frame; a Trigger when it makes an alert."""
        config = self.config
        moment_ns = result.frame.capture_time_unix_ns
        window_ns = int(config.window_s * NS)
        matched = self.matching(result)
        before = (list(state.matches), state.last_alert_ns)
        state.matches = [t for t in state.matches if moment_ns - t < window_ns]
        if matched:
            state.matches.append(moment_ns)
        trigger = None
        if matched and len(state.matches) >= config.min_frames:
            cooling = (
                state.last_alert_ns is not None
                and moment_ns - state.last_alert_ns < config.cooldown_s * NS
            )
            local = datetime.fromtimestamp(moment_ns / NS).astimezone()
            quiet = in_quiet_hours(local.time(), self.quiet)
            if not cooling and not quiet:
                best = max(matched, key=lambda d: d.confidence)
                count = len(state.matches)
                trigger = Trigger(
                    rule=config,
                    label=best.label,
                    confidence=best.confidence,
                    count=count,
                    detections=[_detection_dict(d) for d in matched],
                    message=self.template.render(
                        camera=result.frame.camera_id,
                        label=best.label,
                        count=count,
                        confidence=best.confidence,
                        time=local.isoformat(timespec="seconds"),
                        clock=local.strftime("%H:%M:%S"),
                        snapshot_url=snapshot_url,
                        rule=config.name,
                        severity=config.severity,
                    ),
                )
                state.last_alert_ns = moment_ns
                state.matches = []
        state.dirty = state.dirty or (state.matches, state.last_alert_ns) != before
        return trigger

    # -- rules over objects ----------------------------------------------------
    @property
    def per_object(self) -> bool:
        return self.config.trigger != "present"

    def evaluate_objects(
        self,
        result: result_pb2.Result,
        objects: dict[int, ObjectState],
        snapshot_url: Callable[[int], str],
        crossings: list[str] | None = None,
    ) -> list[Trigger]:
        """Update each tracked object's state with this frame; a Trigger per object that alerts.

        Every crossing of the line (alerting or not) is appended to `crossings` by direction.
        """
        config = self.config
        moment_ns = result.frame.capture_time_unix_ns
        local = datetime.fromtimestamp(moment_ns / NS).astimezone()
        quiet = in_quiet_hours(local.time(), self.quiet)
        triggers = []
        for detection in result.detections:
            if not detection.HasField("track_id"):
                continue
            if config.labels and detection.label not in config.labels:
                continue
            if detection.confidence < config.min_confidence:
                continue
            state = objects.get(detection.track_id)
            if state is None:
                state = objects[detection.track_id] = ObjectState(moment_ns, moment_ns)
            if moment_ns < state.last_seen_ns:
                continue  # an older frame replayed: the object's story is already past it
            point = anchor_point(detection.box, config.anchor)
            crossed = self._crossed(state.last_point, point)
            if crossed and crossings is not None:
                crossings.append(crossed)
            inside = not config.zones or any(
                point_in_polygon(*point, zone) for zone in config.zones
            )
            if inside and state.inside_since_ns is None:
                state.inside_since_ns = moment_ns
            elif not inside:
                state.inside_since_ns = None
            state.last_point, state.last_seen_ns, state.dirty = point, moment_ns, True
            dwell_s = (
                (moment_ns - state.inside_since_ns) / NS
                if inside and state.inside_since_ns is not None
                else 0.0
            )
            fires = {
                "enter": inside,
                "loiter": inside and dwell_s >= config.min_dwell_s,
                "cross": bool(crossed) and config.direction in ("both", crossed),
            }[config.trigger]
            if not fires or state.alerted or quiet:
                continue
            state.alerted = True
            triggers.append(
                self._object_trigger(
                    result, detection, dwell_s, crossed, local, snapshot_url(detection.track_id)
                )
            )
        return triggers

    def _crossed(self, before: tuple[float, float] | None, after: tuple[float, float]) -> str:
        """ "left" or "right" when the move before -> after crosses the rule's line, else ""."""
        if self.config.trigger != "cross" or before is None or before == after:
            return ""
        (ax, ay), (bx, by) = self.config.line

        def side(x: float, y: float) -> float:
            return (bx - ax) * (y - ay) - (by - ay) * (x - ax)

        # A point exactly on the line counts on the right: a crossing is counted once.
        start, end = side(*before), side(*after)
        if (start >= 0) == (end >= 0):
            return ""
        # The move must pass through the segment itself, not its extension.
        (px, py), (qx, qy) = before, after

        def track_side(x: float, y: float) -> float:
            return (qx - px) * (y - py) - (qy - py) * (x - px)

        if (track_side(ax, ay) >= 0) == (track_side(bx, by) >= 0):
            return ""
        # Image coordinates: y grows downwards, so a positive cross product is the right.
        return "right" if end >= 0 else "left"

    def _object_trigger(
        self,
        result: result_pb2.Result,
        detection: result_pb2.Detection,
        dwell_s: float,
        crossed: str,
        local: datetime,
        snapshot_url: str,
    ) -> Trigger:
        config = self.config
        return Trigger(
            rule=config,
            label=detection.label,
            confidence=detection.confidence,
            count=1,
            detections=[_detection_dict(detection)],
            message=self.template.render(
                camera=result.frame.camera_id,
                label=detection.label,
                count=1,
                confidence=detection.confidence,
                time=local.isoformat(timespec="seconds"),
                clock=local.strftime("%H:%M:%S"),
                snapshot_url=snapshot_url,
                rule=config.name,
                severity=config.severity,
                track_id=detection.track_id,
                dwell_s=round(dwell_s, 1),
                direction=crossed,
                trigger=config.trigger,
            ),
            track_id=detection.track_id,
            dwell_s=dwell_s,
            crossed_to=crossed,
        )


def forget_stale(objects: dict[int, ObjectState], now_ns: int) -> list[int]:
    """Drop the states of tracks unseen for OBJECT_STATE_TTL_NS; returns their ids."""
    stale = [tid for tid, s in objects.items() if now_ns - s.last_seen_ns > OBJECT_STATE_TTL_NS]
    if len(objects) - len(stale) > MAX_OBJECTS:
        kept = sorted(
            (tid for tid in objects if tid not in set(stale)),
            key=lambda tid: objects[tid].last_seen_ns,
        )
        stale += kept[: len(kept) - MAX_OBJECTS]
    for track_id in stale:
        del objects[track_id]
    return stale


def _detection_dict(detection: result_pb2.Detection) -> dict[str, Any]:
    box = detection.box
    item: dict[str, Any] = {
        "label": detection.label,
        "confidence": round(detection.confidence, 4),
        "box": [round(box.x_min, 4), round(box.y_min, 4), round(box.x_max, 4), round(box.y_max, 4)],
    }
    if detection.HasField("track_id"):
        item["track_id"] = detection.track_id
    return item


def build_rules(configs: list[RuleConfig]) -> list[Rule]:
    environment = SandboxedEnvironment(autoescape=False)
    return [Rule(config, environment) for config in configs]
