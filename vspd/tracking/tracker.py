"""Tracks per camera, in capture order: SORT's motion model with ByteTrack's two passes.

The broker runs this on the in-order head of each partition, right before a
result is written: a camera's results arrive here in capture order whatever
order the processor calls completed in, so the processor itself can stay
stateless and parallel.

Per camera and label, each track keeps a box and a velocity (an alpha-beta
filter on centre and size, driven by capture time). For each frame:

1. every track's box is predicted to the frame's capture time;
2. detections with confidence >= ``high_confidence`` are matched to tracks by
   IoU (at least ``match_iou``), optimally (vspd.tracking.assignment);
3. detections between ``low_confidence`` and ``high_confidence`` are matched to
   the tracks still unmatched (ByteTrack's second pass: a partly hidden object
   keeps its track instead of breaking it);
4. unmatched confident detections start tracks; tracks unmatched for longer
   than ``lost_track_s`` of capture time are forgotten.

A track's id is its birth frame's capture time in milliseconds times 1000 plus
its index in that frame: stable while the object is visible, never reused for
another object of the camera, and the same if the same frames are tracked
again after a crash. A result whose processor set track ids itself is left
as it is.
"""

from __future__ import annotations

import collections
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from vspd.tracking.assignment import best_pairs
from vspd.v1 import result_pb2

Box = tuple[float, float, float, float]
POSITION_GAIN = 0.6  # how far a box moves to its measurement (the rest: the prediction)
VELOCITY_GAIN = 0.3
SIZE_GAIN = 0.1
MAX_TRACKS_PER_CAMERA = 256
# A processor (or a forged result) with thousands of boxes must not stall the
# broker's loop: beyond this many per frame, the most confident are tracked.
MAX_DETECTIONS_TRACKED = 256
MAX_CAMERAS = 1024  # beyond it the longest-unseen camera's tracks are forgotten
_IDS_PER_MS = 1000


@dataclass(frozen=True)
class TrackerSettings:
    high_confidence: float = 0.5
    low_confidence: float = 0.1
    match_iou: float = 0.2
    lost_track_s: float = 2.0


@dataclass
class Track:
    track_id: int
    label: str
    box: Box  # x_min, y_min, x_max, y_max at `seen_ns`
    seen_ns: int  # capture time of the last frame that matched it
    velocity: tuple[float, float] = (0.0, 0.0)  # of the centre, frame sizes per second

    def predicted(self, at_ns: int) -> Box:
        """The box moved on at its velocity to `at_ns`; its size is kept."""
        dt = max(0.0, (at_ns - self.seen_ns) / 1e9)
        cx, cy, w, h = _centre(self.box)
        vx, vy = self.velocity
        return _corners(cx + vx * dt, cy + vy * dt, w, h)

    def update(self, box: Box, at_ns: int) -> None:
        dt = (at_ns - self.seen_ns) / 1e9
        px, py, w, h = _centre(self.predicted(at_ns))
        mx, my, mw, mh = _centre(box)
        rx, ry = mx - px, my - py
        if dt > 0:
            vx, vy = self.velocity
            self.velocity = (vx + VELOCITY_GAIN * rx / dt, vy + VELOCITY_GAIN * ry / dt)
        # Objects change size slowly and boxes jitter: the size follows more slowly.
        self.box = _corners(
            px + POSITION_GAIN * rx,
            py + POSITION_GAIN * ry,
            w + SIZE_GAIN * (mw - w),
            h + SIZE_GAIN * (mh - h),
        )
        self.seen_ns = at_ns


@dataclass
class CameraTracks:
    tracks: list[Track] = field(default_factory=list)
    last_ns: int = 0  # capture time of the last frame tracked: older frames are not tracked


class Tracker:
    """Every camera's tracks; `annotate` gives a result's detections their track ids."""

    def __init__(self, settings: TrackerSettings | None = None) -> None:
        self.settings = settings or TrackerSettings()
        self._cameras: collections.OrderedDict[str, CameraTracks] = collections.OrderedDict()

    def annotate(self, camera: str, capture_ns: int, result: result_pb2.Result) -> None:
        """Set track_id on the result's detections, in place (the caller keeps capture order)."""
        detections = list(result.detections)
        if any(d.HasField("track_id") for d in detections):
            return  # the processor tracks itself: respected, not overwritten
        state = self._camera(camera)
        if capture_ns < state.last_ns:
            return  # out of order (a replay of an older frame): never disturbs live tracks
        state.last_ns = capture_ns
        if len(detections) > MAX_DETECTIONS_TRACKED:
            detections.sort(key=lambda d: d.confidence, reverse=True)
            del detections[MAX_DETECTIONS_TRACKED:]
        for label in sorted({d.label for d in detections} | {t.label for t in state.tracks}):
            self._track_label(state, label, capture_ns, [d for d in detections if d.label == label])
        horizon = capture_ns - int(self.settings.lost_track_s * 1e9)
        state.tracks = [t for t in state.tracks if t.seen_ns >= horizon]
        if len(state.tracks) > MAX_TRACKS_PER_CAMERA:
            state.tracks.sort(key=lambda t: t.seen_ns)
            del state.tracks[: len(state.tracks) - MAX_TRACKS_PER_CAMERA]

    def seed(self, camera: str, capture_ns: int, result: result_pb2.Result) -> None:
        """Continue from a result already written (after a restart or a rebalance)."""
        state = self._camera(camera)
        if capture_ns <= state.last_ns:
            return
        state.last_ns = capture_ns
        state.tracks = [
            Track(d.track_id, d.label, _box(d), capture_ns)
            for d in result.detections
            if d.HasField("track_id")
        ][:MAX_TRACKS_PER_CAMERA]

    def tracks(self, camera: str) -> list[Track]:
        state = self._cameras.get(camera)
        return list(state.tracks) if state is not None else []

    def _camera(self, camera: str) -> CameraTracks:
        state = self._cameras.get(camera)
        if state is None:
            state = self._cameras[camera] = CameraTracks()
            if len(self._cameras) > MAX_CAMERAS:
                self._cameras.popitem(last=False)
        else:
            self._cameras.move_to_end(camera)
        return state

    def _track_label(
        self,
        state: CameraTracks,
        label: str,
        at_ns: int,
        detections: list[result_pb2.Detection],
    ) -> None:
        settings = self.settings
        tracks = [t for t in state.tracks if t.label == label]
        predicted = [t.predicted(at_ns) for t in tracks]
        high = [d for d in detections if d.confidence >= settings.high_confidence]
        low = [
            d
            for d in detections
            if settings.low_confidence <= d.confidence < settings.high_confidence
        ]
        unmatched = list(range(len(tracks)))
        newborn: list[result_pb2.Detection] = []
        for group in (high, low):
            boxes = [_box(d) for d in group]
            pairs = match([predicted[i] for i in unmatched], boxes, settings.match_iou)
            for track_index, detection_index in pairs:
                track = tracks[unmatched[track_index]]
                track.update(boxes[detection_index], at_ns)
                group[detection_index].track_id = track.track_id
            taken = {unmatched[track_index] for track_index, _ in pairs}
            unmatched = [i for i in unmatched if i not in taken]
            if group is high:
                used = {detection_index for _, detection_index in pairs}
                newborn = [d for i, d in enumerate(group) if i not in used]
        for detection in newborn:
            track_id = _new_id(state, at_ns)
            state.tracks.append(Track(track_id, label, _box(detection), at_ns))
            detection.track_id = track_id


def _new_id(state: CameraTracks, at_ns: int) -> int:
    """The birth frame's capture time in ms, times 1000, plus the tracks born in it so far."""
    base = (at_ns // 1_000_000) * _IDS_PER_MS
    born = sum(1 for t in state.tracks if base <= t.track_id < base + _IDS_PER_MS)
    return base + min(born, _IDS_PER_MS - 1)


def match(
    tracks: Sequence[Box], detections: Sequence[Box], min_iou: float
) -> list[tuple[int, int]]:
    """(track index, detection index) pairs with IoU >= min_iou, the best overall.

    "Best" weighs each pair's IoU by how alike the two boxes' shapes are: when
    two objects of one label overlap, their sizes still tell them apart.
    """
    if not tracks or not detections:
        return []
    scores = [
        [overlap * _alike(t, d) if (overlap := iou(t, d)) >= min_iou else 0.0 for d in detections]
        for t in tracks
    ]
    return best_pairs(scores)


def _alike(a: Box, b: Box) -> float:
    """1 for boxes of the same width and height, less the more they differ."""
    wa, ha, wb, hb = a[2] - a[0], a[3] - a[1], b[2] - b[0], b[3] - b[1]
    if min(wa, ha, wb, hb) <= 0:
        return 0.0
    return min(wa / wb, wb / wa) * min(ha / hb, hb / ha)


def iou(a: Box, b: Box) -> float:
    x1, y1 = max(a[0], b[0]), max(a[1], b[1])
    x2, y2 = min(a[2], b[2]), min(a[3], b[3])
    inter = max(0.0, x2 - x1) * max(0.0, y2 - y1)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _box(detection: result_pb2.Detection) -> Box:
    box = detection.box
    return (box.x_min, box.y_min, box.x_max, box.y_max)


def _centre(box: Box) -> tuple[float, float, float, float]:
    return ((box[0] + box[2]) / 2, (box[1] + box[3]) / 2, box[2] - box[0], box[3] - box[1])


def _corners(cx: float, cy: float, w: float, h: float) -> Box:
    return (cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2)


def annotate_all(tracker: Tracker, results: Iterable[result_pb2.Result]) -> None:
    """Track a camera's results given in capture order (tests and benchmarks)."""
    for result in results:
        tracker.annotate(result.frame.camera_id, result.frame.capture_time_unix_ns, result)
