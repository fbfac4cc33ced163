"""Processors with a known cost, for the broker benchmark."""

from __future__ import annotations

import time

from vspd.processor.plugin import FrameView, Output, ordered_per_camera


def instant(_frame: FrameView) -> Output:
    return Output()


def forty_ms(_frame: FrameView) -> Output:
    time.sleep(0.040)
    return Output()


@ordered_per_camera
def forty_ms_ordered(_frame: FrameView) -> Output:
    """Like forty_ms, for a stateful model: one call per camera at a time."""
    time.sleep(0.040)
    return Output()
