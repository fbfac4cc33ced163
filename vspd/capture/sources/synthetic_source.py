"""`synthetic:` — the generated scene, rendered at the moment of capture."""

from __future__ import annotations

import time

from vspd.capture.sources.base import Captured
from vspd.capture.sources.synthetic import TRUTH_METADATA_KEY, SyntheticScene, boxes_to_metadata
from vspd.config.model import CameraConfig


class SyntheticSource:
    paced_by_reader = True

    def __init__(self, camera: CameraConfig) -> None:
        spec = camera.source_spec
        self._scene = SyntheticScene(
            camera.width,
            camera.height,
            objects=int(spec.option("objects", 3)),
            speed=float(spec.option("speed", 0.25)),
            size=float(spec.option("size", 0.15)),
            seed=int(spec.option("seed", 1)),
            noise=bool(spec.option("noise", True)),
        )
        self._start_ns = time.monotonic_ns()

    def open(self) -> None:
        pass

    def read(self) -> Captured:
        monotonic_ns = time.monotonic_ns()
        unix_ns = time.time_ns()
        image, boxes = self._scene.render((monotonic_ns - self._start_ns) / 1e9)
        return Captured(
            capture_time_unix_ns=unix_ns,
            capture_monotonic_ns=monotonic_ns,
            image=image,
            width=self._scene.width,
            height=self._scene.height,
            metadata={TRUTH_METADATA_KEY: boxes_to_metadata(boxes)},
        )

    def close(self) -> None:
        pass
