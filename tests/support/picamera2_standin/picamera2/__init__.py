"""Stand-in for picamera2 (tests only; see ../README.md)."""

from __future__ import annotations

import json
import os
import threading
import time
from typing import Any

import cv2
import numpy as np

SENSOR = (2304, 1296)  # a Camera Module 3 (imx708)


class Picamera2:
    def __init__(self, index: int = 0) -> None:
        self.index = index
        self.sensor_resolution = SENSOR
        self._config: dict[str, Any] | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def create_video_configuration(
        self,
        main: dict[str, Any] | None = None,
        lores: dict[str, Any] | None = None,
        encode: str = "main",
        controls: dict[str, Any] | None = None,
        **_other: Any,
    ) -> dict[str, Any]:
        return {
            "main": dict(main or {}),
            "lores": dict(lores) if lores else None,
            "encode": encode,
            "controls": dict(controls or {}),
        }

    def configure(self, config: dict[str, Any]) -> None:
        main, lores = config["main"], config["lores"]
        width, height = main.get("size", SENSOR)
        if width > SENSOR[0] or height > SENSOR[1]:
            raise RuntimeError(f"main {width}x{height} is larger than the sensor")
        if lores is not None:
            if lores["size"][0] > width or lores["size"][1] > height:
                raise RuntimeError("lores stream dimensions may not exceed main stream")
            if lores.get("format") != "YUV420":
                raise RuntimeError("lores stream must be YUV420 on this platform")
        self._config = config

    def start_recording(self, encoder: Any, output: Any, name: str | None = None, **_: Any) -> None:
        if self._config is None:
            raise RuntimeError("Camera not configured")
        stream = name or self._config["encode"]
        if self._config.get(stream) is None:
            raise RuntimeError(f"stream {stream} is not configured")
        size = tuple(self._config[stream]["size"])
        record = os.environ.get("STANDIN_RECORD")
        if record:
            with open(record, "w") as file:
                json.dump(
                    {
                        "config": self._config,
                        "encoder": type(encoder).__name__,
                        "quality": getattr(encoder, "q", None),
                        "stream": stream,
                    },
                    file,
                )
        fps = float(self._config["controls"].get("FrameRate", 10))
        self._thread = threading.Thread(target=self._run, args=(output, size, fps), daemon=True)
        self._thread.start()

    def _run(self, output: Any, size: tuple[int, int], fps: float) -> None:
        count = 0
        while not self._stop.is_set():
            image = np.full((size[1], size[0], 3), count % 256, np.uint8)
            ok, jpeg = cv2.imencode(".jpg", image)
            assert ok
            output.outputframe(jpeg.tobytes(), True, time.monotonic_ns() // 1000)
            count += 1
            self._stop.wait(1 / fps)

    def stop_recording(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)

    def close(self) -> None:
        self._stop.set()
