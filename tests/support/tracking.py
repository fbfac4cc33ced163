"""Scoring tracks against the synthetic scene's ground truth with motmetrics (IDF1, MOTA, switches).

The synthetic source's boxes are in a fixed object order: the i-th true box of
every frame is object i (vspd.capture.sources.synthetic). motmetrics' own IoU
helper uses an API NumPy 2 removed, so distances are computed here.
"""

from __future__ import annotations

import math
import random
import warnings
from dataclasses import dataclass

import numpy as np

from vspd.capture.sources.synthetic import Box, SyntheticScene
from vspd.tracking.tracker import Tracker, iou
from vspd.v1 import result_pb2

MATCH_IOU = 0.3  # a track "is" the object when their boxes overlap at least this much
FPS = 15
SECOND_NS = 1_000_000_000


@dataclass(frozen=True)
class Score:
    idf1: float
    mota: float
    switches: int
    object_frames: int

    @property
    def switches_per_100(self) -> float:
        return 100 * self.switches / max(1, self.object_frames)

    def __str__(self) -> str:
        return (
            f"IDF1 {self.idf1:.3f}, MOTA {self.mota:.3f}, ID switches {self.switches} "
            f"({self.switches_per_100:.2f} per 100 object-frames)"
        )


def score(truth: list[list[Box]], results: list[result_pb2.Result]) -> Score:
    """truth[i]: the true boxes of frame i; results[i]: that frame's tracked result."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # motmetrics' pandas usage warns on new pandas
        import motmetrics

        accumulator = motmetrics.MOTAccumulator(auto_id=True)
        for boxes, result in zip(truth, results, strict=True):
            tracked = [d for d in result.detections if d.HasField("track_id")]
            hypotheses = [(d.box.x_min, d.box.y_min, d.box.x_max, d.box.y_max) for d in tracked]
            distances = np.array(
                [
                    [
                        1 - overlap if (overlap := iou(true, seen)) >= MATCH_IOU else math.nan
                        for seen in hypotheses
                    ]
                    for true in boxes
                ],
                dtype=float,
            ).reshape(len(boxes), len(hypotheses))
            accumulator.update(list(range(len(boxes))), [d.track_id for d in tracked], distances)
        summary = motmetrics.metrics.create().compute(
            accumulator, metrics=["idf1", "mota", "num_switches", "num_objects"], name="run"
        )
    row = summary.loc["run"]
    return Score(
        float(row["idf1"]), float(row["mota"]), int(row["num_switches"]), int(row["num_objects"])
    )


def result_at(t_ns: int, boxes: list[tuple[Box, float]], camera: str = "cam") -> result_pb2.Result:
    result = result_pb2.Result(status=result_pb2.STATUS_OK)
    result.frame.camera_id = camera
    result.frame.capture_time_unix_ns = t_ns
    for (x1, y1, x2, y2), confidence in boxes:
        detection = result.detections.add(label="object", confidence=confidence)
        detection.box.x_min, detection.box.y_min = x1, y1
        detection.box.x_max, detection.box.y_max = x2, y2
    return result


def noisy(box: Box, rng: random.Random, sigma: float) -> Box:
    w, h = box[2] - box[0], box[3] - box[1]
    return tuple(  # type: ignore[return-value]
        min(1.0, max(0.0, v + rng.gauss(0, sigma * (w if i % 2 == 0 else h))))
        for i, v in enumerate(box)
    )


def noisy_truth_score(seed: int, seconds: int) -> Score:
    """The tracker alone on a scene's true boxes jittered by 5 % of their size, 10 % dropped,
    confidences 0.3-0.95, at 15 fps."""
    scene = SyntheticScene(640, 480, objects=3, speed=0.25, size=0.15, seed=seed, noise=False)
    rng = random.Random(seed)
    tracker = Tracker()
    start = 1_700_000_000 * SECOND_NS
    truth, results = [], []
    for index in range(seconds * FPS):
        t_ns = start + index * SECOND_NS // FPS
        boxes = scene.boxes((t_ns - start) / 1e9)
        seen = [(noisy(b, rng, 0.05), rng.uniform(0.3, 0.95)) for b in boxes if rng.random() > 0.1]
        result = result_at(t_ns, seen)
        tracker.annotate("cam", t_ns, result)
        truth.append(boxes)
        results.append(result)
    return score(truth, results)
