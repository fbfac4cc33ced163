"""`faces`: OpenCV's Haar cascade for frontal faces."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from vspd.config.model import FacesConfig
from vspd.processor.errors import PluginLoadError
from vspd.processor.plugin import Detection, FrameView, Output

CASCADE_NAME = "haarcascade_frontalface_default.xml"


def cascade_candidates() -> list[Path]:
    """Where OpenCV's bundled cascades live: the pip wheel, then Debian's opencv-data."""
    candidates = []
    data = getattr(cv2, "data", None)
    if data is not None and getattr(data, "haarcascades", None):
        candidates.append(Path(data.haarcascades) / CASCADE_NAME)
    candidates += [
        Path("/usr/share/opencv4/haarcascades") / CASCADE_NAME,
        Path("/usr/share/opencv/haarcascades") / CASCADE_NAME,
    ]
    return candidates


class FaceDetector:
    def __init__(self, config: FacesConfig) -> None:
        if not hasattr(cv2, "CascadeClassifier"):
            raise PluginLoadError(
                f"builtin 'faces' needs cv2.CascadeClassifier, which OpenCV {cv2.__version__} lacks: "
                "use OpenCV 4 (Debian python3-opencv) or opencv-contrib-python-headless"
            )
        found = next((path for path in cascade_candidates() if path.is_file()), None)
        if found is None:
            where = ", ".join(str(path) for path in cascade_candidates())
            raise PluginLoadError(
                f"builtin 'faces' needs {CASCADE_NAME} (Debian package opencv-data); looked in {where}"
            )
        self._path = str(found)
        self._config = config
        self._local = threading.local()
        self._classifier()  # fail now, not on the first frame

    def _classifier(self) -> Any:
        # A classifier is not safe to share between threads; one per worker.
        classifier = getattr(self._local, "classifier", None)
        if classifier is None:
            classifier = cv2.CascadeClassifier(self._path)
            if classifier.empty():
                raise PluginLoadError(f"cannot load cascade {self._path}")
            self._local.classifier = classifier
        return classifier

    def __call__(self, frame: FrameView) -> Output:
        gray = cv2.equalizeHist(cv2.cvtColor(frame.image, cv2.COLOR_BGR2GRAY))
        height, width = gray.shape[:2]
        boxes, _levels, weights = self._classifier().detectMultiScale3(
            gray,
            scaleFactor=self._config.scale_factor,
            minNeighbors=self._config.min_neighbors,
            minSize=(self._config.min_size, self._config.min_size),
            outputRejectLevels=True,
        )
        detections = []
        for (x, y, w, h), weight in zip(boxes, np.ravel(weights), strict=False):
            confidence = 1.0 / (1.0 + float(np.exp(-float(weight))))
            detections.append(
                Detection.from_pixels("face", confidence, x, y, x + w, y + h, width, height)
            )
        return Output(detections=detections)
