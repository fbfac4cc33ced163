"""The report's chart and texts: axes with units, ticks that do not repeat, a legend, no data said."""

from __future__ import annotations

import re
from datetime import datetime, timedelta

import pytest

from vspd.alerts.reports import BUCKET_NS, Period, chart_svg, duration_text


def period_of(seconds: float) -> Period:
    since = datetime(2026, 12, 1, 14, 0, 7).astimezone()
    return Period("custom", since, since + timedelta(seconds=seconds))


def data_with(period: Period, labels: list[str]) -> dict[str, object]:
    first = period.since_ns // BUCKET_NS
    return {
        "timeline": [
            {"bucket": first + index, "label": label, "detections": 3}
            for index in range(3)
            for label in labels
        ]
    }


@pytest.mark.parametrize("seconds", [60, 300, 3600, 86_400, 7 * 86_400])
def test_ticks_never_repeat_and_axes_say_their_units(seconds: float) -> None:
    period = period_of(seconds)
    svg = chart_svg(data_with(period, ["person"]), period, {"person": "#1f77b4"})
    ticks = re.findall(r'<text class="tick"[^>]*>([^<]+)</text>', svg)
    assert len(ticks) >= 2
    assert len(ticks) == len(set(ticks)), ticks
    assert re.search(r'class="axis"[^>]*>detections per \d+ (s|min|h)', svg)
    assert "local time" in svg


def test_a_short_period_shows_seconds_a_week_shows_days() -> None:
    minute = period_of(60)
    ticks = re.findall(r'class="tick"[^>]*>([^<]+)<', chart_svg(data_with(minute, []), minute, {}))
    assert all(re.fullmatch(r"\d\d:\d\d:\d\d", tick) for tick in ticks), ticks
    week = period_of(7 * 86_400)
    ticks = re.findall(r'class="tick"[^>]*>([^<]+)<', chart_svg(data_with(week, []), week, {}))
    assert all(re.fullmatch(r"[A-Z][a-z]{2} \d\d:\d\d", tick) for tick in ticks), ticks


def test_the_legend_is_in_the_chart_and_an_empty_period_says_no_data() -> None:
    period = period_of(3600)
    colors = {"cat": "#ff7f0e", "person": "#1f77b4"}
    svg = chart_svg(data_with(period, ["cat", "person"]), period, colors)
    assert svg.count('class="legend"') == 2
    assert ">cat</text>" in svg
    assert ">person</text>" in svg
    assert "no data in this period" not in svg
    empty = chart_svg({"timeline": []}, period, {})
    assert "no data in this period" in empty


def test_a_label_cannot_inject_markup_into_the_chart() -> None:
    period = period_of(3600)
    label = '<script>alert(1)</script>"'
    svg = chart_svg(data_with(period, [label]), period, {label: "#000"})
    assert "<script>" not in svg
    assert "&lt;script&gt;" in svg


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(5, "5 s"), (59.6, "1 min"), (125, "2 min 5 s"), (3600, "1 h"), (4800, "1 h 20 min")],
)
def test_durations_read_as_people_read_them(seconds: float, text: str) -> None:
    assert duration_text(seconds) == text
