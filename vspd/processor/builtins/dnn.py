"""`dnn`: a user-supplied ONNX detector run by OpenCV's DNN module.

Decodes the three common output layouts:
- yolov8: (1, 4 + classes, N), rows cx, cy, w, h in input pixels, then class scores;
- yolov5: (1, N, 5 + classes), cx, cy, w, h, objectness, class scores;
- ssd:    (1, 1, N, 7), image id, class id, confidence, x1, y1, x2, y2 in 0..1.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from vspd.config.model import DnnConfig
from vspd.processor.errors import PluginLoadError
from vspd.processor.plugin import Detection, FrameView, Output


class DnnDetector:
    def __init__(self, config: DnnConfig) -> None:
        self._config = config
        if not Path(config.model).is_file():
            raise PluginLoadError(f"dnn.model {config.model!r} does not exist")
        self._labels: list[str] = []
        if config.labels:
            try:
                text = Path(config.labels).read_text(encoding="utf-8")
            except OSError as exc:
                raise PluginLoadError(f"dnn.labels {config.labels!r}: {exc.strerror}") from None
            self._labels = [line.strip() for line in text.splitlines() if line.strip()]
        self._local = threading.local()
        self._net()  # load (and fail) at start-up: SERVING means the model is loaded

    def _net(self) -> Any:
        # cv2.dnn.Net keeps per-inference state: one per worker thread.
        net = getattr(self._local, "net", None)
        if net is None:
            try:
                net = cv2.dnn.readNetFromONNX(self._config.model)
            except cv2.error as exc:
                raise PluginLoadError(
                    f"dnn.model {self._config.model!r} does not load: {exc}"
                ) from None
            self._local.net = net
        return net

    def label(self, class_id: int) -> str:
        return self._labels[class_id] if 0 <= class_id < len(self._labels) else f"class{class_id}"

    def __call__(self, frame: FrameView) -> Output:
        config = self._config
        blob = cv2.dnn.blobFromImage(
            frame.image,
            scalefactor=config.scale,
            size=(config.input_width, config.input_height),
            mean=config.mean,
            swapRB=config.swap_rb,
            crop=False,
        )
        net = self._net()
        net.setInput(blob)
        output = np.asarray(net.forward(), dtype=np.float32)
        candidates = self._ssd(output) if config.output == "ssd" else self._yolo(output)
        return Output(detections=self._suppress(candidates))

    def _yolo(self, output: npt.NDArray[np.float32]) -> list[tuple[int, float, tuple[float, ...]]]:
        config = self._config
        rows = output.reshape(output.shape[-2], output.shape[-1])
        if config.output == "yolov8":
            rows = rows.T  # (N, 4 + classes)
            scores_all = rows[:, 4:]
        else:
            scores_all = rows[:, 5:] * rows[:, 4:5]
        candidates: list[tuple[int, float, tuple[float, ...]]] = []
        for row, scores in zip(rows, scores_all, strict=True):
            class_id = int(np.argmax(scores))
            confidence = float(scores[class_id])
            if confidence < config.confidence:
                continue
            cx, cy, w, h = (float(v) for v in row[:4])
            box = (
                (cx - w / 2) / config.input_width,
                (cy - h / 2) / config.input_height,
                (cx + w / 2) / config.input_width,
                (cy + h / 2) / config.input_height,
            )
            candidates.append((class_id, confidence, box))
        return candidates

    def _ssd(self, output: npt.NDArray[np.float32]) -> list[tuple[int, float, tuple[float, ...]]]:
        rows = output.reshape(-1, 7)
        return [
            (int(row[1]), float(row[2]), tuple(float(v) for v in row[3:7]))
            for row in rows
            if float(row[2]) >= self._config.confidence
        ]

    def _suppress(self, candidates: list[tuple[int, float, tuple[float, ...]]]) -> list[Detection]:
        if not candidates:
            return []
        rects = [[x1, y1, x2 - x1, y2 - y1] for _, _, (x1, y1, x2, y2) in candidates]
        scores = [confidence for _, confidence, _ in candidates]
        keep = cv2.dnn.NMSBoxes(rects, scores, self._config.confidence, self._config.nms_threshold)
        detections = []
        for index in np.ravel(keep):
            class_id, confidence, (x1, y1, x2, y2) = candidates[int(index)]
            box = tuple(min(1.0, max(0.0, v)) for v in (x1, y1, x2, y2))
            detections.append(
                Detection(self.label(class_id), confidence, (box[0], box[1], box[2], box[3]))
            )
        return detections
