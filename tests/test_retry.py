"""The one backoff rule: capped, jittered, and safe after any number of attempts."""

from __future__ import annotations

import pytest

from vspd.runtime.retry import backoff_delay


def test_doubles_from_the_initial_delay_up_to_the_cap() -> None:
    delays = [backoff_delay(0.2, 10.0, attempt, jitter=0.0) for attempt in range(1, 9)]
    assert delays == pytest.approx([0.2, 0.4, 0.8, 1.6, 3.2, 6.4, 10.0, 10.0])


def test_retrying_for_days_never_overflows() -> None:
    # A processor or sink down for days: thousands of attempts (2 ** 5000 is no float).
    assert backoff_delay(1.0, 300.0, 5000, jitter=0.0) == 300.0


def test_jitter_stays_within_its_band() -> None:
    delays = [backoff_delay(1.0, 1.0, 3) for _ in range(200)]
    assert all(0.8 <= delay <= 1.2 for delay in delays)
    assert len(set(delays)) > 1
