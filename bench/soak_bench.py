"""Memory over time: the whole pipeline at 8 cameras for 30 minutes, each daemon's RSS.

The same pipeline as pipeline_bench (640x480 @ 15 fps synthetic cameras, the
motion processor, Tansu on loopback, every daemon its own process). Every
`--every` seconds each daemon's resident memory (VmRSS) is read from /proc; the
table shows it over time (captures: the largest of them), and the last row the
slope after the warm-up in MiB per hour, by least squares: a flat line is the
goal (growth is what users of every such system complain of). Beside them, the
broker's frames buffered ahead of its windows (MiB) and its consumer lag (frames):
a broker that falls behind fills its buffer, which is memory by design, not a leak.
Tansu keeps every message in memory and enforces no retention (~250 MB per minute at
8 cameras x 15 fps), and its work per fetch grows with what it holds: at 15 fps it
becomes the bottleneck after a few minutes (100 % of a core, lag rising while the
broker's buffer is empty) and the daemons' later figures are those of a pipeline
starved by its test broker. For a whole half hour against Tansu, run the cameras
slower (--fps 3: the same daemons, models and queues, a fifth of the messages); the
lag column says whether the pipeline kept up. Against a real Kafka, use 15 fps.
Run: .venv/bin/python -m bench.soak_bench [--fps 3]
"""

from __future__ import annotations

import argparse
import sys
import time

from bench.pipeline_bench import pipeline
from bench.support import print_table
from bench.support_proc import rss_mib

STAGES = ("capture", "processor", "broker", "alerts")


def slope_per_hour(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of (seconds, MiB), in MiB per hour."""
    if len(points) < 2:
        return 0.0
    n = len(points)
    mean_t = sum(t for t, _ in points) / n
    mean_v = sum(v for _, v in points) / n
    spread = sum((t - mean_t) ** 2 for t, _ in points)
    if spread == 0:
        return 0.0
    return 3600 * sum((t - mean_t) * (v - mean_v) for t, v in points) / spread


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cameras", type=int, default=8)
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--warmup", type=float, default=60.0, help="seconds not in the slope")
    parser.add_argument("--every", type=float, default=60.0, help="seconds between samples")
    parser.add_argument("--fps", type=float, default=15.0, help="each camera's frame rate")
    parser.add_argument("--clips", action="store_true", help="with event clips (off by default)")
    args = parser.parse_args(argv)
    rows = []
    series: dict[str, list[tuple[float, float]]] = {stage: [] for stage in STAGES}
    with pipeline(args.cameras, clips=args.clips, fps=args.fps) as (_kafka, stages, _config, _work):
        started = time.monotonic()
        while True:
            elapsed = time.monotonic() - started
            sample = {stage: max(rss_mib(s.process.pid) for s in stages[stage]) for stage in STAGES}
            # Why the broker holds what it holds: frames buffered ahead, and how far behind it is.
            broker = stages["broker"][0]
            buffered = broker.metric("vspd_broker_buffered_bytes") / 2**20
            lag = broker.metric("vspd_broker_consumer_lag")
            anon = {
                stage: max(rss_mib(s.process.pid, "RssAnon") for s in stages[stage])
                for stage in STAGES
            }
            rows.append(
                [
                    f"{elapsed / 60:.1f}",
                    *(f"{sample[s]:.0f} ({anon[s]:.0f})" for s in STAGES),
                    f"{buffered:.0f}",
                    f"{lag:.0f}",
                ]
            )
            if elapsed >= args.warmup:
                for stage in STAGES:
                    series[stage].append((elapsed, sample[stage]))
            if elapsed >= args.minutes * 60:
                break
            time.sleep(args.every)  # a soak: samples at a fixed pace
    rows.append(["MiB/h", *(f"{slope_per_hour(series[s]):+.1f}" for s in STAGES), "", ""])
    clips = "with clips" if args.clips else "no clips"
    print(
        f"soak: {args.cameras} cameras x {args.fps:g} fps, {args.minutes:g} min, {clips}, "
        "RSS MiB (of it anonymous: heap and stacks; capture: the largest)"
    )
    print_table(["min", *STAGES, "buffered", "lag"], rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
