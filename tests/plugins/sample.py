"""Test plug-ins: behaviour is steered by the frame's metadata."""

from __future__ import annotations

import asyncio
import threading

from vspd.processor.plugin import Detection, FrameView, Output

__version__ = "9.9"

# Seqs the plug-in actually ran for, and gates that hold a call until released.
calls: list[int] = []
gates: dict[str, threading.Event] = {}
entered: dict[str, threading.Event] = {}


def behave(frame: FrameView) -> Output:
    gate = frame.metadata.get("gate")
    if gate:
        entered.setdefault(gate, threading.Event()).set()
        gates.setdefault(gate, threading.Event()).wait(30)
    calls.append(frame.seq)
    if frame.metadata.get("explode"):
        raise RuntimeError(f"boom on {frame.seq}")
    height, width = frame.image.shape[:2]
    return Output(
        detections=[
            Detection.from_pixels("thing", 0.75, 0, 0, width / 2, height / 4, width, height)
        ],
        attributes={"seen": str(frame.seq)},
    )


async def async_behave(frame: FrameView) -> list[Detection]:
    await asyncio.sleep(0)
    return [Detection("async-thing", 0.5, (0.1, 0.2, 0.3, 0.4))]


class CountPerCamera:
    """Keeps per-camera state the documented way."""

    def __call__(self, frame: FrameView) -> Output:
        with frame.state_lock:
            frame.state["count"] = frame.state.get("count", 0) + 1
            count = frame.state["count"]
        return Output(attributes={"count": str(count)})


def wrong_type(_frame: FrameView) -> object:
    return {"not": "detections"}


def jitter(frame: FrameView) -> Output:
    """Random latency (0-25 ms) so that calls finish out of order."""
    import random
    import time

    time.sleep(random.uniform(0, 0.025))
    return Output(
        detections=[Detection("thing", 0.5, (0.25, 0.25, 0.5, 0.75))],
        attributes={"seq": str(frame.seq)},
    )
