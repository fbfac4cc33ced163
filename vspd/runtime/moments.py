"""Moments given on the command line (`vspd report`, `vspd replay`)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from vspd.errors import VspdError


class MomentError(VspdError):
    """A --since or --until that is not a time."""


def parse_moment(text: str) -> datetime:
    """An ISO 8601 date or time; without a zone, the machine's local time."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise MomentError(
            f"{text!r} is not an ISO date or time (e.g. 2026-11-25 or 2026-11-25T14:00)"
        ) from None
    return moment if moment.tzinfo else moment.astimezone()


def parse_period(since: str, until: str) -> tuple[datetime, datetime]:
    start, end = parse_moment(since), parse_moment(until)
    if end <= start:
        raise MomentError("--until must be after --since")
    return start, end


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def unix_ns(moment: datetime) -> int:
    """Exact nanoseconds since the epoch (timestamp() is a float: off by up to ~100 ns)."""
    return (moment - _EPOCH) // timedelta(microseconds=1) * 1000
