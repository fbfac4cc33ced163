"""`vspd status`: the pipeline's health in the terminal, from Kafka alone.

One line per camera, one per consumer group, the dead letters of the last
hour; exit 1 when a camera is stale or a group lags beyond the thresholds, so
that it can run from cron or a monitoring check.
"""

from __future__ import annotations

import argparse

from vspd.config import VspdConfig
from vspd.observe.health import CameraHealth, GroupLag, PipelineHealth, gather


def age_text(seconds: float | None) -> str:
    if seconds is None:
        return "never seen"
    if seconds < 60:
        return f"{seconds:.1f} s ago"
    if seconds < 3600:
        return f"{seconds / 60:.0f} min ago"
    return f"{seconds / 3600:.1f} h ago"


def render(
    health: PipelineHealth, stale_after_s: float, max_lag: int
) -> tuple[list[str], list[str]]:
    """(lines to print, problems); no problems means exit 0."""
    lines = [f"{'camera':<24} {'last frame':>12} {'fps':>6} {'gaps':>5}  state"]
    problems: list[str] = []
    for camera in health.cameras:
        stale = camera.stale(stale_after_s)
        lines.append(_camera_line(camera, stale))
        if stale:
            problems.append(f"camera {camera.camera} stale ({age_text(camera.last_frame_age_s)})")
    if not health.cameras:
        lines.append("(no frames in the frames topic and no [[cameras]] configured)")
    for name, group in (("broker", health.broker), ("alerts", health.alerts)):
        if group is None:
            continue
        line, problem = _group_line(name, group, max_lag)
        lines.append(line)
        if problem:
            problems.append(problem)
    lines.append(f"dead letters in the last hour: {health.dead_letters_last_hour}")
    if health.undecodable_frames:
        lines.append(
            f"messages in the frames topic that are not frames: {health.undecodable_frames}"
        )
    return lines, problems


def _camera_line(camera: CameraHealth, stale: bool) -> str:
    fps = f"{camera.fps:.1f}" if camera.sampled else "-"
    gaps = str(camera.gaps) if camera.sampled else "-"
    state = "STALE" if stale else "ok"
    return (
        f"{camera.camera:<24} {age_text(camera.last_frame_age_s):>12} {fps:>6} {gaps:>5}  {state}"
    )


def _group_line(name: str, group: GroupLag, max_lag: int) -> tuple[str, str]:
    where = f"{name:<7} group {group.group} on {group.topic}:"
    if group.lag is None:
        return f"{where} nothing committed yet  NOT RUNNING?", (
            f"{name} group {group.group} has committed nothing (is vspd {name} running?)"
        )
    if group.lag > max_lag:
        return f"{where} {group.lag} behind  LAGGING", (
            f"{name} lagging: {group.lag} messages behind (more than {max_lag})"
        )
    return f"{where} {group.lag} behind  ok", ""


def main(config: VspdConfig, args: argparse.Namespace) -> int:
    health = gather(config, sample=args.sample)
    lines, problems = render(health, args.stale_after, args.max_lag)
    print(f"Kafka at {config.kafka.bootstrap_servers}")  # noqa: T201 - the command's output
    for line in lines:
        print(line)  # noqa: T201 - the command's output
    if problems:
        print(f"{len(problems)} problem(s): " + "; ".join(problems))  # noqa: T201
        return 1
    print("ok")  # noqa: T201
    return 0
