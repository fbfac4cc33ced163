"""Scoring tracks against the synthetic scene's ground truth with motmetrics (IDF1, MOTA, switches).

The synthetic source's boxes are in a fixed object order: the i-th true box of
every frame is object i (vspd.capture.sources.synthetic). motmetrics' own IoU
helper uses an API NumPy 2 removed, so distances are computed here.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np

from vspd.capture.sources.synthetic import Box
from vspd.tracking.tracker import iou
from vspd.v1 import result_pb2

MATCH_IOU = 0.3  # a track "is" the object when their boxes overlap at least this much


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
