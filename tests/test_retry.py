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


def test_processor_errors_and_the_broker_agree_on_what_is_worth_retrying() -> None:
    import grpc

    from vspd.broker.processor_client import CallOutcome
    from vspd.processor.core import error_code
    from vspd.processor.errors import (
        DeadlineExpiredError,
        InvalidFrameError,
        NotReadyError,
        PluginLoadError,
        ProcessorError,
    )

    for kind in (
        ProcessorError,
        InvalidFrameError,
        NotReadyError,
        DeadlineExpiredError,
        PluginLoadError,
    ):
        error = kind("x")
        code, _message = error_code(error)
        assert code is kind.code
        outcome = CallOutcome(None, code, "x", 0.0)
        assert outcome.transient is error.retriable, kind.__name__
    assert NotReadyError("x").retriable
    assert not InvalidFrameError("x").retriable
    # A plug-in's own exception is a bug: INTERNAL, not retried.
    code, _message = error_code(ValueError("bad"))
    assert code is grpc.StatusCode.INTERNAL
    assert not CallOutcome(None, code, "", 0.0).transient
