"""`motion`: background subtraction per camera; boxes of the moving regions."""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from vspd.config.model import MotionConfig
from vspd.processor.plugin import Detection, FrameView, Output

# Work on a small copy: motion boxes do not need full resolution, the Pi's CPU and memory
# do (a background model costs ~60 bytes a pixel: 1.2 MB a camera at 160x120, 18 MB at
# 640x480). Frigate's motion detector works at 100 pixels high for the same reasons.
ANALYSIS_WIDTH = 160
# Frames a new background model sees before it reports anything (it is learning).
WARMUP_FRAMES = 3
_SHADOW_CUTOFF = 200  # MOG2 marks shadows 127 and foreground 255


class MotionDetector:
    # The background model learns from each frame: it must see a camera's
    # frames in capture order, one at a time.
    ordered_per_camera = True

    def __init__(self, config: MotionConfig) -> None:
        self._config = config
        self._kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (3, 3))

    def _model(self, frame: FrameView) -> dict[str, Any]:
        state = frame.state
        if "motion" not in state:
            state["motion"] = {
                "subtractor": cv2.createBackgroundSubtractorMOG2(
                    history=self._config.history,
                    varThreshold=self._config.var_threshold,
                    detectShadows=True,
                ),
                "frames": 0,
            }
            state["motion"]["subtractor"].setNMixtures(self._config.mixtures)
        model: dict[str, Any] = state["motion"]
        return model

    def __call__(self, frame: FrameView) -> Output:
        image = frame.image_at_least(ANALYSIS_WIDTH)
        height, width = image.shape[:2]
        scale = min(1.0, ANALYSIS_WIDTH / width)
        small = (
            cv2.resize(
                image,
                (max(1, int(width * scale)), max(1, int(height * scale))),
                interpolation=cv2.INTER_AREA,
            )
            if scale < 1.0
            else image
        )
        with frame.state_lock:
            model = self._model(frame)
            mask = model["subtractor"].apply(small)
            model["frames"] += 1
            learned = model["frames"] > WARMUP_FRAMES
        if not learned:
            return Output(attributes={"motion.state": "learning"})
        _, mask = cv2.threshold(mask, _SHADOW_CUTOFF, 255, cv2.THRESH_BINARY)
        mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, self._kernel)
        mask = cv2.dilate(mask, self._kernel, iterations=2)
        contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        small_h, small_w = mask.shape[:2]
        min_area = self._config.min_area * small_w * small_h
        detections = []
        for contour in contours:
            x, y, w, h = cv2.boundingRect(contour)
            if w * h < min_area:
                continue
            filled = float(np.count_nonzero(mask[y : y + h, x : x + w])) / float(w * h)
            detections.append(
                Detection.from_pixels(
                    self._config.label, filled, x, y, x + w, y + h, small_w, small_h
                )
            )
        moving = float(np.count_nonzero(mask))
        return Output(
            detections=detections,
            attributes={"motion.fraction": f"{moving / (small_w * small_h):.4f}"},
        )
