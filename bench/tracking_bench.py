"""The tracker against ground truth: IDF1, MOTA and identity switches on the synthetic scene.

Two feeds, side by side, on the same scenes (640x480, 3 objects, 15 fps, 60 s):
(a) noisy truth — the true boxes jittered by 5 % of their size, 10 % dropped,
    confidences 0.3-0.95: the tracker alone;
(b) the built-in `motion` processor on the rendered frames: what a user gets.
Each row is one scene (seed); the last, the mean. Run: .venv/bin/python -m bench.tracking_bench
"""

from __future__ import annotations

import argparse
import sys
import time

import cv2

from bench.support import print_table
from tests.support.tracking import FPS, SECOND_NS, Score, noisy_truth_score, result_at, score
from vspd.capture.sources.synthetic import SyntheticScene
from vspd.config.model import MotionConfig
from vspd.processor.builtins.motion import MotionDetector
from vspd.processor.plugin import CameraStates, FrameView
from vspd.tracking.tracker import Tracker
from vspd.v1 import frame_pb2


def motion_fed(seed: int, seconds: int) -> tuple[Score, float]:
    """The motion processor's boxes, tracked; also the tracker's own time per frame (ms)."""
    scene = SyntheticScene(640, 480, objects=3, speed=0.25, size=0.15, seed=seed)
    detector = MotionDetector(MotionConfig())
    states = CameraStates()
    tracker = Tracker()
    start = 1_700_000_000 * SECOND_NS
    truth, results = [], []
    tracking_s = 0.0
    for index in range(seconds * FPS):
        t_ns = start + index * SECOND_NS // FPS
        image, boxes = scene.render((t_ns - start) / 1e9)
        ok, jpeg = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 80])
        assert ok
        frame = frame_pb2.Frame(
            camera_id="cam", session_id="s", seq=index, capture_time_unix_ns=t_ns,
            width=640, height=480, encoding=frame_pb2.ENCODING_JPEG, image=jpeg.tobytes(),
        )  # fmt: skip
        output = detector(FrameView(frame, states))
        result = result_at(t_ns, [(d.box, d.confidence) for d in output.detections])
        began = time.perf_counter()
        tracker.annotate("cam", t_ns, result)
        tracking_s += time.perf_counter() - began
        truth.append(boxes)
        results.append(result)
    return score(truth, results), 1000 * tracking_s / (seconds * FPS)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--seconds", type=int, default=60)
    args = parser.parse_args()
    rows = []
    totals = [0.0] * 6
    for seed in range(1, args.seeds + 1):
        a = noisy_truth_score(seed, args.seconds)
        b, per_frame_ms = motion_fed(seed, args.seconds)
        figures = [a.idf1, a.mota, a.switches_per_100, b.idf1, b.mota, b.switches_per_100]
        totals = [t + f for t, f in zip(totals, figures, strict=True)]
        rows.append(
            [
                str(seed),
                *(f"{f:.3f}" if i % 3 != 2 else f"{f:.2f}" for i, f in enumerate(figures)),
                f"{per_frame_ms:.3f}",
            ]
        )
    mean = [t / args.seeds for t in totals]
    rows.append(
        ["mean", *(f"{f:.3f}" if i % 3 != 2 else f"{f:.2f}" for i, f in enumerate(mean)), ""]
    )
    print(f"tracker, synthetic scene 640x480, 3 objects, {FPS} fps, {args.seconds} s per scene")
    print_table(
        [
            "scene",
            "(a) noisy truth IDF1", "MOTA", "switches/100",
            "(b) motion IDF1", "MOTA", "switches/100",
            "tracker ms/frame",
        ],
        rows,
    )  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
