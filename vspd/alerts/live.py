"""What each camera shows right now: the live page and Home Assistant read it.

The consumer thread tells it every result it handles (`observe`) and every
alert it raises (`alert`); readers on other threads take consistent copies
(`cameras`, `latest_result`). Nothing here is durable: after a restart the
live view fills again from the next results. Cameras are bounded (a flood of
forged camera ids evicts the longest silent, never grows memory).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from vspd.v1 import result_pb2

NS = 1_000_000_000
FPS_WINDOW_NS = 10 * NS
MAX_CAMERAS = 256
ALERTS_KEPT = 10


@dataclass(frozen=True)
class LiveAlert:
    key: str
    rule: str
    label: str
    message: str
    severity: str
    time_ns: int
    snapshot: str | None  # relative to state_dir ("snapshots/..."), once drawn
    clip: str | None = None  # relative to state_dir ("clips/..."), once made


@dataclass(frozen=True)
class CameraView:
    """A copy of one camera's live state, safe to read on any thread."""

    camera: str
    last_capture_ns: int
    received_ns: int  # wall clock when its newest result arrived
    seq: int
    fps: float
    gaps: int
    objects: dict[str, int]  # label -> objects in the newest frame (tracks where tracked)
    rules_matched_ns: dict[str, int]  # rule -> capture time of its last matching frame
    alerts: list[LiveAlert]

    def age_s(self, now_ns: int) -> float:
        return max(0.0, (now_ns - self.received_ns) / NS)


@dataclass
class _Camera:
    camera: str
    last_capture_ns: int = 0
    received_ns: int = 0
    seq: int = 0
    times: deque[int] = field(default_factory=lambda: deque(maxlen=600))
    gaps: int = 0
    objects: dict[str, int] = field(default_factory=dict)
    rules_matched_ns: dict[str, int] = field(default_factory=dict)
    alerts: deque[LiveAlert] = field(default_factory=lambda: deque(maxlen=ALERTS_KEPT))
    latest: result_pb2.Result | None = None

    def view(self) -> CameraView:
        recent = [t for t in self.times if t >= self.last_capture_ns - FPS_WINDOW_NS]
        span_s = (recent[-1] - recent[0]) / NS if len(recent) > 1 else 0.0
        return CameraView(
            camera=self.camera,
            last_capture_ns=self.last_capture_ns,
            received_ns=self.received_ns,
            seq=self.seq,
            fps=(len(recent) - 1) / span_s if span_s > 0 else 0.0,
            gaps=self.gaps,
            objects=dict(self.objects),
            rules_matched_ns=dict(self.rules_matched_ns),
            alerts=list(self.alerts),
        )


def objects_present(result: result_pb2.Result) -> dict[str, int]:
    """Per label: distinct tracks where detections carry track ids, else detections."""
    tracks: dict[str, set[int]] = {}
    untracked: dict[str, int] = {}
    for detection in result.detections:
        if detection.HasField("track_id"):
            tracks.setdefault(detection.label, set()).add(detection.track_id)
        else:
            untracked[detection.label] = untracked.get(detection.label, 0) + 1
    counts = {label: len(ids) for label, ids in tracks.items()}
    for label, count in untracked.items():
        counts[label] = counts.get(label, 0) + count
    return counts


class LiveState:
    def __init__(self, max_cameras: int = MAX_CAMERAS) -> None:
        self._lock = threading.Lock()
        self._cameras: dict[str, _Camera] = {}
        self._max_cameras = max_cameras
        self.changed = threading.Condition(self._lock)  # notified on every change

    def observe(self, result: result_pb2.Result, gaps: int, matched_rules: list[str]) -> None:
        frame = result.frame
        with self._lock:
            camera = self._camera(frame.camera_id)
            if frame.capture_time_unix_ns < camera.last_capture_ns:
                return  # an older result (a replay): the live view is past it
            camera.last_capture_ns = frame.capture_time_unix_ns
            camera.received_ns = time.time_ns()
            camera.seq = frame.seq
            camera.times.append(frame.capture_time_unix_ns)
            camera.gaps += gaps
            camera.objects = objects_present(result)
            for rule in matched_rules:
                camera.rules_matched_ns[rule] = frame.capture_time_unix_ns
            camera.latest = result
            self.changed.notify_all()

    def alert(self, camera_id: str, alert: LiveAlert) -> None:
        with self._lock:
            self._camera(camera_id).alerts.appendleft(alert)
            self.changed.notify_all()

    def snapshot_drawn(self, camera_id: str, key: str, snapshot: str | None) -> None:
        self._change_alert(camera_id, key, lambda a: replace(a, snapshot=snapshot))

    def clip_made(self, camera_id: str, key: str, clip: str) -> None:
        self._change_alert(camera_id, key, lambda a: replace(a, clip=clip))

    def _change_alert(
        self, camera_id: str, key: str, change: Callable[[LiveAlert], LiveAlert]
    ) -> None:
        with self._lock:
            camera = self._cameras.get(camera_id)
            if camera is None:
                return
            camera.alerts = deque(
                (change(a) if a.key == key else a for a in camera.alerts), maxlen=ALERTS_KEPT
            )
            self.changed.notify_all()

    def cameras(self) -> list[CameraView]:
        with self._lock:
            return [camera.view() for _id, camera in sorted(self._cameras.items())]

    def latest_result(self, camera_id: str) -> result_pb2.Result | None:
        with self._lock:
            camera = self._cameras.get(camera_id)
            return camera.latest if camera is not None else None

    def _camera(self, camera_id: str) -> _Camera:
        camera = self._cameras.get(camera_id)
        if camera is None:
            if len(self._cameras) >= self._max_cameras:
                silent = min(self._cameras.values(), key=lambda c: c.received_ns)
                del self._cameras[silent.camera]
            camera = self._cameras[camera_id] = _Camera(camera_id)
        return camera
