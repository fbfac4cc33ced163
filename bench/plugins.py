"""Processors with a known cost, for the broker benchmark."""

from __future__ import annotations

import time

from vspd.processor.plugin import FrameView, Output


def instant(_frame: FrameView) -> Output:
    return Output()


def forty_ms(_frame: FrameView) -> Output:
    time.sleep(0.040)
    return Output()
