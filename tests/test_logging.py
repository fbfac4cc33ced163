"""Log lines: a library repeating itself is said once per window, with its count."""

from __future__ import annotations

import logging

from vspd.runtime.logging import RepeatFilter


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def record(message: str, name: str = "librdkafka", level: int = logging.ERROR) -> logging.LogRecord:
    return logging.LogRecord(name, level, __file__, 1, message, None, None)


def failed_connect(after_ms: int) -> logging.LogRecord:
    return record(
        f"FAIL [vspd-capture#producer-{after_ms % 3}] 127.0.0.1:1/bootstrap: Connect failed: "
        f"Connection refused (after {after_ms}ms in state CONNECT)"
    )


def test_lines_that_differ_only_in_numbers_are_one_line_per_window() -> None:
    clock = Clock()
    repeats = RepeatFilter(window_s=60, clock=clock)
    passed = []
    for index in range(400):  # what librdkafka said in 42 s with Kafka down
        clock.now = index * 0.1
        line = failed_connect(index)
        if repeats.filter(line):
            passed.append(line.getMessage())
    assert len(passed) == 1
    clock.now = 61.0
    again = failed_connect(7)
    assert repeats.filter(again)
    assert again.getMessage().endswith("(and 399 more like it since)")


def test_a_different_line_or_level_is_said_at_once() -> None:
    clock = Clock()
    repeats = RepeatFilter(window_s=60, clock=clock)
    assert repeats.filter(failed_connect(0))
    assert repeats.filter(record("Broker transport failure"))
    assert repeats.filter(record("Connect failed (after 1ms)", level=logging.WARNING))
    assert not repeats.filter(failed_connect(5))
