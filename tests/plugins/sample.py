"""Test plug-ins: behaviour is steered by the frame's metadata."""

from __future__ import annotations

import asyncio
import random
import threading
import time

from vspd.capture.sources.synthetic import TRUTH_METADATA_KEY, boxes_from_metadata
from vspd.processor.plugin import Detection, FrameView, Output, ordered_per_camera

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


_running = [0]
_running_lock = threading.Lock()


def jitter(frame: FrameView) -> Output:
    """Random latency (0-25 ms) so that calls finish out of order; says how many overlapped."""
    import random
    import time

    with _running_lock:
        _running[0] += 1
        overlapping = _running[0]
    try:
        time.sleep(random.uniform(0, 0.025))
    finally:
        with _running_lock:
            _running[0] -= 1
    return Output(
        detections=[Detection("thing", 0.5, (0.25, 0.25, 0.5, 0.75))],
        attributes={"seq": str(frame.seq), "overlapping": str(overlapping)},
    )


_next_seq: dict[str, int] = {}


@ordered_per_camera
def strict_order(frame: FrameView) -> Output:
    """A stateful model in miniature: fails on any frame that is not its camera's next."""
    import random
    import time

    expected = _next_seq.get(frame.camera_id, 0)
    if frame.seq != expected:
        raise RuntimeError(f"{frame.camera_id}: got seq {frame.seq}, expected {expected}")
    time.sleep(random.uniform(0, 0.01))
    _next_seq[frame.camera_id] = frame.seq + 1
    return Output(attributes={"seq": str(frame.seq)})


def sloppy(_frame: FrameView) -> Output:
    """A buggy model: NaN and out-of-range confidences, a box inside out and off the frame."""
    return Output(
        detections=[
            Detection("thing", float("nan"), (0.9, 0.8, 0.1, 1.7)),
            Detection("thing", 2.0, (0.1, 0.1, 0.2, 0.2)),
        ]
    )


def truth(frame: FrameView) -> Output:
    """The synthetic scene's true boxes (frame metadata), in object order, after a random delay:
    calls finish out of order, as a real model's would."""
    time.sleep(random.uniform(0, 0.01))
    boxes = boxes_from_metadata(frame.metadata.get(TRUTH_METADATA_KEY, "[]"))
    return Output(detections=[Detection("object", 0.9, box) for box in boxes])
