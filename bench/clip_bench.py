"""What an event clip costs the alerts daemon: encoding, per codec, side by side.

The synthetic scene (moving objects on a textured background) at 640x480 and
1280x720, 10 fps, 15 s (an alert's default clip: 5 s before, 10 s after),
JPEG q80 as capture writes it; each codec this OpenCV can write encodes the
same frames. Figures: CPU ms per frame, and how many clip seconds one second
of the worker's time makes (above 1: clips keep up with one alert at a time).
Run: .venv/bin/python -m bench.clip_bench
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

# FFmpeg's own lines (an encoder it tries and cannot open): silenced, as `vspd` does.
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")

import cv2  # after the environment above

from bench.support import print_table
from vspd.alerts.clips import CODECS, Codec, encode
from vspd.capture.sources.synthetic import SyntheticScene
from vspd.v1 import frame_pb2

FPS = 10
NS = 1_000_000_000


def frames(width: int, height: int, seconds: int) -> list[frame_pb2.Frame]:
    scene = SyntheticScene(width, height, objects=3, seed=1)
    made = []
    for index in range(seconds * FPS):
        image, _boxes = scene.render(index / FPS)
        ok, jpeg = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 80])
        assert ok
        made.append(
            frame_pb2.Frame(
                camera_id="bench", session_id="s", seq=index,
                capture_time_unix_ns=index * NS // FPS, width=width, height=height,
                encoding=frame_pb2.ENCODING_JPEG, image=jpeg.tobytes(),
            )
        )  # fmt: skip
    return made


def writable(codec: Codec, directory: Path) -> bool:
    path = directory / f"probe{codec.suffix}"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*codec.fourcc), 10.0, (64, 48))
    opened = writer.isOpened()
    writer.release()
    return opened


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=15, help="clip length (default 15)")
    args = parser.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as directory:
        work = Path(directory)
        codecs = [codec for codec in CODECS if writable(codec, work)]
        for width, height in ((640, 480), (1280, 720)):
            clip = frames(width, height, args.seconds)
            for codec in codecs:
                path = work / f"clip{codec.suffix}"
                started_cpu, started = time.process_time(), time.perf_counter()
                encode(clip, path, codec, NS // FPS)
                cpu, wall = time.process_time() - started_cpu, time.perf_counter() - started
                rows.append(
                    [
                        f"{width}x{height}",
                        codec.description,
                        f"{cpu / len(clip) * 1000:.1f}",
                        f"{args.seconds / wall:.1f}",
                        f"{path.stat().st_size / 1024:.0f}",
                    ]
                )
    print_table(["size", "codec", "CPU ms/frame", "clip s per s", "KiB"], rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
