"""Capture: CPU per frame, highest sustained fps and peak RSS per resolution (and the
anonymous part of the RSS: what is not mapped libraries).

Each case runs in its own process (clean peak RSS). Without --fps the camera
goes as fast as the capture takes its frames: it delivers the next frame once
the queue to the encoder is empty (``AsFastAsTaken``; a camera that simply
raced would measure frames rendered and dropped, not the capture's ceiling).
"synthetic" renders and JPEG-encodes (quality 80) every frame; "pass-through"
gets JPEGs from the source, as from an MJPEG camera, and only wraps and sends.
With --fps the camera delivers at that rate instead (a real camera's pace):
CPU per frame then includes what a frame costs at rest (wake-ups, librdkafka's
per-message work), the figure a Pi's core pays.
"floor" is the least any capture could do with librdkafka from Python, beside it in
the same run: one thread waits for the frame's time (as the read thread does for a
paced source), produces the JPEG bytes as they are (no Frame around them) with the
capture's producer settings, and serves delivery reports; the ratio column is each
pass-through row's CPU per frame over the floor's at the same size.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.support import cpu_seconds, peak_rss_mib, positive, print_table, tansu
from bench.support_proc import rss_mib
from tests.support.tansu import free_port
from vspd.capture.daemon import CaptureDaemon
from vspd.capture.sources.base import Captured
from vspd.config.model import VspdConfig
from vspd.runtime.metrics import counted

RESOLUTIONS = [(640, 480), (1280, 720), (1920, 1080)]


JPEGS = 20


def write_jpegs(directory: Path, width: int, height: int) -> Path:
    """A camera's JPEGs, made by the parent: the measured process never imports OpenCV,
    like a capture daemon passing a camera's JPEG through."""
    import cv2

    from vspd.capture.sources.synthetic import SyntheticScene

    scene = SyntheticScene(width, height)
    folder = directory / f"{width}x{height}"
    folder.mkdir()
    for t in range(JPEGS):
        image = scene.render(t / 10)[0]
        ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 80])
        assert ok
        (folder / f"{t:02d}.jpg").write_bytes(data.tobytes())
    return folder


class AsFastAsTaken:
    """A source wrapped so that it never outruns the encoder: each read waits
    (polling every 0.2 ms) until the queue to the encoder is empty."""

    paced_by_reader = True

    def __init__(self, source: Any, queue: Any) -> None:
        self._source = source
        self._queue = queue

    def open(self) -> None:
        self._source.open()

    def read(self) -> Captured:
        while self._queue.qsize():
            time.sleep(0.0002)
        captured: Captured = self._source.read()
        return captured

    def close(self) -> None:
        self._source.close()


class JpegSource:
    """A camera that already delivers JPEG (pass-through path)."""

    paced_by_reader = True

    def __init__(self, folder: Path, width: int, height: int) -> None:
        self._jpegs = [path.read_bytes() for path in sorted(folder.glob("*.jpg"))]
        self._index = 0
        self._size = (width, height)

    def open(self) -> None:
        pass

    def read(self) -> Captured:
        self._index += 1
        width, height = self._size
        return Captured.now(jpeg=self._jpegs[self._index % JPEGS], width=width, height=height)

    def close(self) -> None:
        pass


def run_case(
    bootstrap: str,
    width: int,
    height: int,
    mode: str,
    seconds: float,
    fps: float = 0.0,
    jpegs: Path | None = None,
) -> dict[str, float]:
    # Pass-through: a source whose module needs no OpenCV (replaced before it opens).
    source = "synthetic:" if mode == "synthetic" else "http://127.0.0.1:9/unused"
    config = VspdConfig.model_validate(
        {
            "kafka": {"bootstrap_servers": bootstrap, "frames_topic": f"bench-{mode}-{width}"},
            "cameras": [
                {
                    "id": "bench",
                    "source": source,
                    "fps": 120,
                    "width": width,
                    "height": height,
                    "jpeg_quality": 80,
                }
            ],
            "metrics": {"enabled": False},
        }
    )
    from prometheus_client import CollectorRegistry

    daemon = CaptureDaemon(config, config.cameras[0], CollectorRegistry())
    # Ask for far more than any case can send (the config caps fps at 120).
    daemon.reader.camera = daemon.reader.camera.model_copy(update={"fps": fps or 100_000.0})
    if mode == "pass-through":
        assert jpegs is not None
        daemon.reader.source = JpegSource(jpegs, width, height)
    if not fps:
        daemon.reader.source = AsFastAsTaken(daemon.reader.source, daemon.reader.frames)
    daemon.start()
    # Warm up (topic creation, connections), then measure.
    warm_until = time.monotonic() + 2
    while time.monotonic() < warm_until:
        daemon.step()
    sent0, cpu0, t0 = counted(daemon.metrics.sent), cpu_seconds(), time.monotonic()
    dropped0 = counted(daemon.metrics.dropped)
    while time.monotonic() - t0 < seconds:
        daemon.step()
    elapsed = time.monotonic() - t0
    sent, cpu = counted(daemon.metrics.sent) - sent0, cpu_seconds() - cpu0
    dropped = counted(daemon.metrics.dropped) - dropped0
    steady_rss = rss_mib(os.getpid())  # after the measured span: the steady state
    anon = rss_mib(os.getpid(), "RssAnon")
    daemon.drain()
    return {
        "fps": sent / elapsed,
        "cpu_ms_per_frame": 1000 * cpu / max(sent, 1),
        "peak_rss_mib": peak_rss_mib(),
        "rss_mib": steady_rss,
        "anon_mib": anon,
        "dropped_per_s": dropped / elapsed,
    }


def run_floor(
    bootstrap: str, width: int, height: int, seconds: float, fps: float, jpegs: Path
) -> dict[str, float]:
    import threading

    from confluent_kafka import Producer

    from vspd.runtime.kafka import producer_settings

    config = VspdConfig.model_validate(
        {"kafka": {"bootstrap_servers": bootstrap}, "metrics": {"enabled": False}}
    )
    producer = Producer(producer_settings(config.kafka, "bench-floor", **{"message.timeout.ms": 0}))
    images = [path.read_bytes() for path in sorted(jpegs.glob("*.jpg"))]
    topic = f"bench-floor-{width}"
    delivered = [0]

    def on_delivery(error: object, _message: object) -> None:
        delivered[0] += error is None

    pace = threading.Event()  # never set: its wait() is the reader's pacing wait
    interval = 1 / fps if fps else 0.0

    def loop(until: float, index: int = 0) -> None:
        next_due = time.monotonic()
        while time.monotonic() < until:
            wait = next_due - time.monotonic()
            if wait > 0:
                pace.wait(wait)
            next_due = max(next_due + interval, time.monotonic())
            index += 1
            try:
                producer.produce(
                    topic, images[index % len(images)], b"bench", on_delivery=on_delivery
                )
            except BufferError:
                producer.poll(0.01)
            producer.poll(0)

    loop(time.monotonic() + 2)  # warm up, as run_case does
    sent0, cpu0, t0 = delivered[0], cpu_seconds(), time.monotonic()
    loop(t0 + seconds)
    elapsed = time.monotonic() - t0
    sent, cpu = delivered[0] - sent0, cpu_seconds() - cpu0
    steady_rss = rss_mib(os.getpid())
    anon = rss_mib(os.getpid(), "RssAnon")
    producer.flush(30)
    return {
        "fps": sent / elapsed,
        "cpu_ms_per_frame": 1000 * cpu / max(sent, 1),
        "peak_rss_mib": peak_rss_mib(),
        "rss_mib": steady_rss,
        "anon_mib": anon,
    }


def run_outage(frame_bytes: int) -> None:
    """Kafka away: a pass-through capture's sender fills its buffer (`[capture] buffer_bytes`,
    its default) with frames of frame_bytes; its RSS then, in a fresh process."""
    from prometheus_client import CollectorRegistry

    from vspd.capture.metrics import CaptureMetrics
    from vspd.capture.sender import FrameSender

    config = VspdConfig.model_validate(
        {"kafka": {"bootstrap_servers": f"127.0.0.1:{free_port()}"}, "metrics": {"enabled": False}}
    )
    sender = FrameSender(config, "away", CaptureMetrics(CollectorRegistry()))
    before = rss_mib(os.getpid())
    frames = 2 * config.capture.buffer_bytes // frame_bytes  # twice what the bound holds
    for seq in range(frames):
        sender.add(seq, os.urandom(frame_bytes), 0)
        sender.pump()
    held = sender.buffered_bytes + sender.unacked_bytes
    print(
        f"Kafka away, {frames} frames of {frame_bytes // 1000} KB: sender holds {held >> 20} MiB "
        f"(buffer_bytes {config.capture.buffer_bytes >> 20} MiB, of it handed to librdkafka "
        f"{sender.unacked_bytes >> 20}); RSS {before:.0f} MiB before, "
        f"{rss_mib(os.getpid()):.0f} MiB after"
    )
    sender.producer.purge()


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument(
        "--fps", type=float, default=0.0, help="the camera's pace (default: as fast as it goes)"
    )
    parser.add_argument("--case", nargs=4, metavar=("BOOTSTRAP", "WIDTH", "HEIGHT", "MODE"))
    parser.add_argument("--jpegs", type=Path, help="(a case) the camera's JPEGs")
    parser.add_argument(
        "--outage",
        type=positive,
        metavar="FRAME_BYTES",
        help="only this: RSS of a sender whose Kafka is away, frames of this size (1080p: 211000)",
    )
    args = parser.parse_args()
    if args.outage:
        if args.outage < 1000:
            parser.error("--outage: frames of 1000 bytes or more")
        run_outage(args.outage)
        return 0
    if args.case:
        bootstrap, width, height, mode = args.case
        if mode == "floor":
            assert args.jpegs is not None
            figures = run_floor(
                bootstrap, int(width), int(height), args.seconds, args.fps, args.jpegs
            )
        else:
            figures = run_case(
                bootstrap, int(width), int(height), mode, args.seconds, args.fps, args.jpegs
            )
        figures["opencv_imported"] = "cv2" in sys.modules
        print(json.dumps(figures))
        return 0
    rows = []
    with tansu() as broker, tempfile.TemporaryDirectory() as directory:
        folders = {size: write_jpegs(Path(directory), *size) for size in RESOLUTIONS}
        floor: dict[tuple[int, int], float] = {}
        # The floor is a camera's pace at rest: without --fps it would only fill librdkafka.
        modes = (
            ("synthetic", "floor", "pass-through") if args.fps else ("synthetic", "pass-through")
        )
        for mode in modes:
            for width, height in RESOLUTIONS:
                child = subprocess.run(
                    [
                        sys.executable,
                        "-m",
                        "bench.capture_bench",
                        "--seconds",
                        str(args.seconds),
                        "--fps",
                        str(args.fps),
                        "--case",
                        broker.bootstrap,
                        str(width),
                        str(height),
                        mode,
                        "--jpegs",
                        str(folders[(width, height)]),
                    ],
                    capture_output=True,
                    text=True,
                    check=True,
                )
                figures = json.loads(child.stdout.strip().splitlines()[-1])
                cpu = figures["cpu_ms_per_frame"]
                if mode == "floor":
                    floor[(width, height)] = cpu
                ratio = cpu / floor[(width, height)] if mode == "pass-through" and floor else None
                rows.append(
                    [
                        mode,
                        f"{width}x{height}",
                        f"{figures['cpu_ms_per_frame']:.2f}",
                        f"{figures['fps']:.1f}",
                        f"{figures['peak_rss_mib']:.0f}",
                        f"{figures['rss_mib']:.0f}",
                        f"{figures['anon_mib']:.0f}",
                        f"{figures.get('dropped_per_s', 0):.0f}",
                        "yes" if figures["opencv_imported"] else "no",
                        f"{ratio:.2f}" if ratio else "",
                    ]
                )
    pace = f"camera at {args.fps:g} fps" if args.fps else "as fast as it goes"
    print(f"capture, JPEG quality 80, {args.seconds:.0f} s per case, {pace}, one per process")
    print_table(
        [
            "source",
            "resolution",
            "CPU ms/frame",
            "max fps",
            "peak RSS MiB",
            "RSS at end MiB",
            "of it anonymous",
            "dropped/s",
            "OpenCV",
            "/ floor",
        ],
        rows,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
