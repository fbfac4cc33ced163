"""Processor: requests/s and latency of `motion` over gRPC on loopback, server CPU per request.

The server runs as its own process (`vspd processor`, builtin motion, 2 worker
threads on this 2-core machine); the client keeps 4 calls in flight for 8 cameras
(a background model each). The server's resident memory is read after each size,
with its anonymous part (heap, stacks, models): the rest is mapped libraries, whose
resident share varies with what the page cache held when they were loaded (OpenCV's
alone 13-27 MiB here).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import cv2
import grpc

from bench.support import print_table
from bench.support_proc import process_cpu_seconds, rss_mib
from tests.support.processes import DaemonProcess
from tests.support.tansu import free_port
from vspd.capture.sources.synthetic import SyntheticScene
from vspd.v1 import frame_pb2, processor_pb2_grpc


def frames(width: int, height: int, count: int) -> list[frame_pb2.Frame]:
    scene = SyntheticScene(width, height, objects=3)
    result = []
    for seq in range(count):
        image, _ = scene.render(seq / 15)
        data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 80])[1].tobytes()
        result.append(
            frame_pb2.Frame(
                camera_id="bench",
                session_id="s",
                seq=seq,
                width=width,
                height=height,
                encoding=frame_pb2.ENCODING_JPEG,
                image=data,
            )
        )
    return result


CAMERAS = 8


def run(
    port: int, pid: int, width: int, height: int, seconds: float, concurrency: int
) -> list[object]:
    stub = processor_pb2_grpc.ProcessorStub(grpc.insecure_channel(f"127.0.0.1:{port}"))
    batch = frames(width, height, 150)
    latencies: list[float] = []
    lock = threading.Lock()
    stop_at = time.monotonic() + seconds
    counter = iter(range(10**9))

    def worker() -> None:
        while time.monotonic() < stop_at:
            index = next(counter)
            frame = batch[index % len(batch)]
            frame.camera_id = f"cam{index % CAMERAS}"
            started = time.perf_counter()
            stub.Process(frame, timeout=30)
            with lock:
                latencies.append(time.perf_counter() - started)

    for camera in range(CAMERAS):  # learn the backgrounds first
        for frame in batch[:30]:
            frame.camera_id = f"cam{camera}"
            stub.Process(frame, timeout=30)
    cpu0, t0 = process_cpu_seconds(pid), time.monotonic()
    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed, cpu = time.monotonic() - t0, process_cpu_seconds(pid) - cpu0
    latencies.sort()
    return [
        f"{width}x{height}",
        f"{len(latencies) / elapsed:.0f}",
        f"{statistics.median(latencies) * 1000:.1f}",
        f"{latencies[int(len(latencies) * 0.99)] * 1000:.1f}",
        f"{cpu / len(latencies) * 1000:.2f}",
        f"{rss_mib(pid):.0f}",
        f"{rss_mib(pid, 'RssAnon'):.0f}",
    ]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--concurrency", type=int, default=4)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        port = free_port()
        config = Path(directory) / "vspd.toml"
        config.write_text(
            f'[processor]\nlisten = "127.0.0.1:{port}"\nbuiltin = "motion"\nworkers = 2\n'
            "[metrics]\nenabled = false\n"
        )
        server = DaemonProcess(
            ["--config", str(config), "processor"], Path(directory) / "p.log"
        ).start()
        try:
            server.wait_for_log("serving")
            rows = [
                run(port, server.pid, w, h, args.seconds, args.concurrency)
                for w, h in [(640, 480), (1280, 720)]
            ]
        finally:
            server.stop()
    print(
        f"processor `motion` over gRPC, {args.concurrency} calls in flight, {args.seconds:.0f} s per size"
    )
    print_table(
        [
            "frame",
            "requests/s",
            "p50 ms",
            "p99 ms",
            "server CPU ms/request",
            "server RSS MiB",
            "of it anonymous",
        ],
        rows,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
