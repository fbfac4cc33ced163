"""Reports: per camera and period, from the store, as self-contained HTML, JSON and CSV.

Layout of a reports directory:
  index.html                      every report, newest first
  <camera>/<period>-<start>.html  charts inline as SVG, thumbnails inline: no network fetches
  <camera>/<period>-<start>.json  the same figures for machines
  <camera>/<period>-<start>.csv   the timeline (5-second bucket start, label, detections)
"""

from __future__ import annotations

import argparse
import base64
import csv
import io
import json
import os
import sqlite3
from dataclasses import dataclass
from datetime import datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import Any

from jinja2 import Environment

from vspd.alerts import store
from vspd.alerts.errors import AlertsError
from vspd.alerts.snapshots import thumbnail
from vspd.config import VspdConfig
from vspd.runtime.moments import parse_period
from vspd.runtime.paths import UnsafePathError, inside, relative_link, safe_name

BUCKET_NS = store.BUCKET_NS
PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf"]
PERIODS = {"hourly": timedelta(hours=1), "daily": timedelta(days=1)}


@dataclass(frozen=True)
class Period:
    name: str  # hourly, daily, or custom
    since: datetime
    until: datetime

    @property
    def since_ns(self) -> int:
        return int(self.since.timestamp() * 1e9)

    @property
    def until_ns(self) -> int:
        return int(self.until.timestamp() * 1e9)

    @property
    def slug(self) -> str:
        return f"{self.name}-{self.since.strftime('%Y%m%dT%H%M')}"


def period_containing(name: str, moment: datetime) -> Period:
    local = moment.astimezone()
    start = local.replace(minute=0, second=0, microsecond=0)
    if name == "daily":
        start = start.replace(hour=0)
    return Period(name, start, start + PERIODS[name])


def _environment() -> Environment:
    environment = Environment(autoescape=True, trim_blocks=True, lstrip_blocks=True)
    environment.filters["duration"] = duration_text
    return environment


def template_text(name: str) -> str:
    return resources.files("vspd.alerts").joinpath("templates", name).read_text(encoding="utf-8")


def _text(moment_ns: int) -> str:
    return datetime.fromtimestamp(moment_ns / 1e9).astimezone().strftime("%Y-%m-%d %H:%M:%S %Z")


def cameras_in(connection: sqlite3.Connection, period: Period) -> list[str]:
    return store.cameras_between(connection, period.since_ns, period.until_ns)


def gather(
    connection: sqlite3.Connection, camera: str, period: Period, state_dir: Path
) -> dict[str, Any]:
    first, end = period.since_ns // BUCKET_NS, -(-period.until_ns // BUCKET_NS)
    counts = [
        {
            "label": count.label,
            "detections": count.detections,
            "frames": count.frames,
            "max_confidence": count.max_confidence,
        }
        for count in store.label_counts(connection, camera, first, end)
    ]
    timeline = [
        {"bucket": point.bucket, "label": point.label, "detections": point.detections}
        for point in store.timeline(connection, camera, first, end)
    ]
    objects = [
        {
            "label": item.label,
            "unique": item.unique,
            "mean_seen_s": item.mean_seen_s,
            "max_seen_s": item.max_seen_s,
        }
        for item in store.objects_between(connection, camera, period.since_ns, period.until_ns)
    ]
    crossings = [
        {"rule": item.rule, "direction": item.direction, "count": item.count}
        for item in store.crossings_between(connection, camera, period.since_ns, period.until_ns)
    ]
    health = store.frame_health(connection, camera, first, end)
    results = health.results
    seconds = health.active_buckets * BUCKET_NS / 1e9 if results else 1.0
    alerts = []
    for event in store.events_between(connection, camera, period.since_ns, period.until_ns):
        deliveries = [
            {"sink": d.sink, "state": d.state, "attempts": d.attempts}
            for d in store.deliveries_of(connection, event.id)
        ]
        alerts.append(
            {
                "event_id": event.key,
                "rule": event.rule,
                "label": event.label,
                "confidence": event.confidence,
                "count": event.count,
                "severity": event.severity,
                "message": event.message,
                "time_ns": event.time_ns,
                "snapshot": event.snapshot,
                "deliveries": deliveries,
                **_clip_fields(store.clip_of(connection, event.id)),
            }
        )
    return {
        "camera": camera,
        "period": period.name,
        "since": period.since.isoformat(),
        "until": period.until.isoformat(),
        "counts": counts,
        "objects": objects,
        "crossings": crossings,
        "timeline": timeline,
        "alerts": alerts,
        "health": {
            "results": results,
            "ok": health.ok,
            "failed": health.failed,
            "skipped": health.skipped,
            "gaps": health.gaps,
            "fps": results / seconds,
            "latency_mean_ms": health.latency_sum_ms / results if results else 0.0,
            "latency_max_ms": health.latency_max_ms,
        },
        "_state_dir": str(state_dir),
    }


def chart_svg(data: dict[str, Any], period: Period, colors: dict[str, str]) -> str:
    """Stacked bars of detections per time bucket, one colour per label, with axes and legend."""
    width, height, left, bottom, top = 900, 250, 60, 44, 26
    span = max(1, -(-(period.until_ns - period.since_ns) // BUCKET_NS))
    per_bar = max(1, -(-span // 60))  # at most 60 bars, each a whole number of buckets
    bars = -(-span // per_bar)
    first = period.since_ns // BUCKET_NS
    stacks: list[dict[str, int]] = [{} for _ in range(bars)]
    for item in data["timeline"]:
        index = min(bars - 1, max(0, (item["bucket"] - first) // per_bar))
        stacks[index][item["label"]] = stacks[index].get(item["label"], 0) + item["detections"]
    peak = max([sum(s.values()) for s in stacks] + [1])
    bar = (width - left) / bars
    base = height - bottom
    bar_s = per_bar * BUCKET_NS / 1e9
    parts = [
        f'<svg id="timeline" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="detections over time">',
        f'<line x1="{left}" y1="{base}" x2="{width}" y2="{base}" stroke="#999"/>',
        f'<line x1="{left}" y1="{top}" x2="{left}" y2="{base}" stroke="#999"/>',
        f'<text x="{left - 6}" y="{top + 4}" text-anchor="end" font-size="11">{peak}</text>',
        f'<text x="{left - 6}" y="{base}" text-anchor="end" font-size="11">0</text>',
        # The y axis says what a bar counts and over how long; the x axis, whose clock.
        f'<text class="axis" x="14" y="{(top + base) / 2:.0f}" font-size="11" text-anchor="middle" '
        f'transform="rotate(-90 14 {(top + base) / 2:.0f})">detections per {duration_text(bar_s)}</text>',
        f'<text class="axis" x="{(left + width) / 2:.0f}" y="{height - 2}" font-size="11" '
        f'text-anchor="middle">local time ({_xml(period.since.strftime("%Z") or "local")})</text>',
    ]
    x = float(left)
    for label, color in colors.items():  # the legend, inside the chart wherever it is shown
        parts.append(
            f'<rect class="legend" x="{x:.0f}" y="4" width="10" height="10" fill="{color}"/>'
            f'<text x="{x + 14:.0f}" y="13" font-size="11">{_xml(label)}</text>'
        )
        x += 24 + 7 * len(label)
    plot = base - top
    for index, stack in enumerate(stacks):
        y = float(base)
        for label in sorted(stack):
            h = plot * stack[label] / peak
            y -= h
            parts.append(
                f'<rect class="bar" data-label="{_xml(label)}" x="{left + index * bar:.1f}" y="{y:.1f}" '
                f'width="{max(1.0, bar - 1):.1f}" height="{h:.1f}" fill="{colors[label]}">'
                f"<title>{_xml(label)}: {stack[label]}</title></rect>"
            )
    if not data["timeline"]:
        parts.append(
            f'<text class="no-data" x="{(left + width) / 2:.0f}" y="{(top + base) / 2:.0f}" '
            'text-anchor="middle" font-size="14" fill="#888">no data in this period</text>'
        )
    shown: set[str] = set()
    for text, tick_x in _ticks(period, bars, bar, bar_s):
        if text in shown:
            continue  # a tick never repeats its neighbour's time
        shown.add(text)
        parts.append(
            f'<text class="tick" x="{left + tick_x:.1f}" y="{base + 14}" font-size="11" '
            f'text-anchor="middle">{text}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def _ticks(period: Period, bars: int, bar: float, bar_s: float) -> list[tuple[str, float]]:
    """About six time labels; seconds shown when ticks are under a minute apart, days past a day."""
    step = max(1, bars // 6)
    spacing_s = step * bar_s
    total_s = bars * bar_s
    fmt = "%H:%M:%S" if spacing_s < 60 else ("%a %H:%M" if total_s > 86_400 else "%H:%M")
    return [
        ((period.since + timedelta(seconds=tick * bar_s)).strftime(fmt), tick * bar)
        for tick in range(0, bars + 1, step)
    ]


def duration_text(seconds: float) -> str:
    """5 s, 2 min 5 s, 1 h 20 min: durations as people read them."""
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds} s"
    minutes, rest = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {rest} s" if rest else f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min" if minutes else f"{hours} h"


def _xml(text: str) -> str:
    return (
        text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")
    )


def _clip_fields(clip: store.ClipRecord | None) -> dict[str, Any]:
    if clip is None:
        return {"clip": None, "clip_state": None, "clip_missing": None}
    path = clip.path if clip.state == "done" else None
    return {"clip": path, "clip_state": clip.state, "clip_missing": clip.note or None}


def state_file_href(state_dir: Path, snapshot: str | None, out_dir: Path | None) -> str:
    """A link from the report to a stored snapshot or clip (relative: it also works offline)."""
    if not snapshot or out_dir is None:
        return ""
    try:
        target = inside(state_dir, *Path(snapshot).parts)
    except UnsafePathError:
        return ""
    if not target.exists():
        return ""
    return Path(os.path.relpath(target.resolve(), out_dir.resolve())).as_posix()


def render_html(data: dict[str, Any], period: Period, out_dir: Path | None = None) -> str:
    labels = sorted(
        {row["label"] for row in data["counts"]} | {row["label"] for row in data["timeline"]}
    )
    colors = {label: PALETTE[index % len(PALETTE)] for index, label in enumerate(labels)}
    state_dir = Path(data["_state_dir"])
    alerts = []
    for alert in data["alerts"]:
        thumb = ""
        if alert["snapshot"]:
            try:
                snapshot = inside(state_dir, *Path(alert["snapshot"]).parts)
                thumb = base64.b64encode(thumbnail(snapshot.read_bytes())).decode()
            except (OSError, UnsafePathError):
                thumb = ""
        alerts.append(
            {
                **alert,
                "thumbnail": thumb,
                "snapshot_href": state_file_href(state_dir, alert["snapshot"], out_dir),
                "clip_href": state_file_href(state_dir, alert.get("clip"), out_dir),
                "time_text": _text(alert["time_ns"]),
            }
        )
    view = {
        **data,
        "alerts": alerts,
        "colors": list(colors.items()),
        "chart": chart_svg(data, period, colors),
        "period_label": f"{period.name} report",
        "since_text": period.since.strftime("%Y-%m-%d %H:%M %Z"),
        "until_text": period.until.strftime("%Y-%m-%d %H:%M %Z"),
        "generated_text": datetime.now().astimezone().strftime("%Y-%m-%d %H:%M:%S %Z"),
    }
    return _environment().from_string(template_text("report.html.j2")).render(r=view)


def render_csv(data: dict[str, Any]) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["bucket_start", "label", "detections"])
    for item in data["timeline"]:
        moment = datetime.fromtimestamp(item["bucket"] * BUCKET_NS / 1e9).astimezone().isoformat()
        writer.writerow([moment, item["label"], item["detections"]])
    return out.getvalue()


def write_period(
    connection: sqlite3.Connection, period: Period, out: Path, state_dir: Path
) -> list[Path]:
    """Write every camera's report for the period; returns the HTML files written."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for camera in cameras_in(connection, period):
        data = gather(connection, camera, period, state_dir)
        directory = inside(out, safe_name(camera))
        directory.mkdir(parents=True, exist_ok=True)
        base = directory / period.slug
        _atomic(base.with_suffix(".html"), render_html(data, period, directory))
        public = {k: v for k, v in data.items() if not k.startswith("_")}
        _atomic(base.with_suffix(".json"), json.dumps(public, indent=1))
        _atomic(base.with_suffix(".csv"), render_csv(data))
        written.append(base.with_suffix(".html"))
    write_index(out)
    return written


def write_index(out: Path) -> Path:
    entries = []
    for path in sorted(out.glob("*/*.json")):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(data, dict):
                continue
        except (OSError, ValueError):
            continue
        entries.append(
            {
                "period": data["period"],
                "camera": data["camera"],
                "since": data["since"],
                "since_text": data["since"][:16].replace("T", " "),
                "until_text": data["until"][:16].replace("T", " "),
                "alerts": len(data["alerts"]),
                "detections": sum(row["detections"] for row in data["counts"]),
                # Relative and quoted: a camera id can never become a scheme (javascript:).
                "html": relative_link(path.parent.name, f"{path.stem}.html"),
                "json": relative_link(path.parent.name, path.name),
                "csv": relative_link(path.parent.name, f"{path.stem}.csv"),
            }
        )
    entries.sort(key=lambda e: (e["since"], e["camera"]), reverse=True)
    index = out / "index.html"
    _atomic(
        index, _environment().from_string(template_text("index.html.j2")).render(entries=entries)
    )
    return index


def _atomic(path: Path, text: str) -> None:
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(text, encoding="utf-8")
    temporary.replace(path)


def main(config: VspdConfig, args: argparse.Namespace) -> int:
    """`vspd report --since ... --until ... --out DIR`: any period, on demand."""
    since, until = parse_period(args.since, args.until)
    state_dir = Path(config.alerts.state_dir)
    database = store.database_path(state_dir)
    if not database.exists():
        raise AlertsError(
            f"no alerts store at {database} (has `vspd alerts` run with this config?)"
        )
    connection = store.connect(database)
    try:
        written = write_period(connection, Period("custom", since, until), args.out, state_dir)
    except OSError as exc:  # the user's --out: one line, not a traceback
        reason = exc.strerror or str(exc)
        where = f"{exc.filename}: " if exc.filename and exc.filename != str(args.out) else ""
        raise AlertsError(f"cannot write the report into {args.out}: {where}{reason}") from None
    finally:
        connection.close()
    for path in written:
        print(path)  # noqa: T201 - the command's output
    print(args.out / "index.html")  # noqa: T201
    return 0
