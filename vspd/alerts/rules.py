"""Rules over results: which detections count, debounce, cooldown, quiet hours.

Time is the frame's capture time, not the clock at processing: a replay or a
backlog gives the same decisions as live processing would have.
"""

from __future__ import annotations

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


@dataclass(frozen=True)
class Trigger:
    rule: RuleConfig
    label: str
    confidence: float
    count: int
    detections: list[dict[str, Any]]
    message: str


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
                        snapshot_url=snapshot_url,
                        rule=config.name,
                        severity=config.severity,
                    ),
                )
                state.last_alert_ns = moment_ns
                state.matches = []
        state.dirty = state.dirty or (state.matches, state.last_alert_ns) != before
        return trigger


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
