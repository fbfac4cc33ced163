"""The whole pipeline under load: 8, 16 and 32 synthetic cameras of 640x480 at 15 fps, motion processor.

Per case: sustained results/s against the cameras' target, capture-to-result
latency p50/p99, capture-to-alert p99 (delivery to the log sink), CPU per frame
per stage, and whether the pipeline keeps up. Every daemon is its own process,
as under systemd; the broker is Tansu on loopback.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from confluent_kafka import KafkaException

from bench.support import print_table
from bench.support_proc import process_cpu_seconds
from tests.support.kafka import read_to_end
from tests.support.metrics import histogram_quantile, scrape_or_zero
from tests.support.processes import DaemonProcess
from tests.support.tansu import TansuBroker, free_port
from vspd import wire
from vspd.alerts import store
from vspd.config import load_config
from vspd.config.toml_writer import render_toml
from vspd.runtime.topics import create_topics

FPS = 15.0


@contextlib.contextmanager
def pipeline(
    cameras: int, clips: bool = False, fps: float = FPS
) -> Iterator[tuple[TansuBroker, dict[str, list[Stage]], Any, Path]]:
    """Tansu, a processor, a broker, an alerts daemon and `cameras` captures, each a process.

    Event clips are off unless asked for: they are background work (a clip per alert),
    and the figures here are of the pipeline keeping up with its cameras.
    """
    with tempfile.TemporaryDirectory() as directory:
        work = Path(directory)
        kafka = TansuBroker(free_port(), work / "kafka.log").start()
        children: list[Stage] = []
        try:
            ports = [free_port() for _ in range(cameras + 3)]
            processor_port = free_port()
            config_path = work / "vspd.toml"
            config_path.write_text(
                render_toml(
                    {
                        "kafka": {
                            "bootstrap_servers": kafka.bootstrap,
                            "partitions": 8,
                            "session_timeout_ms": 6000,
                        },
                        "cameras": [
                            {
                                "id": f"cam-{i}",
                                "source": f"synthetic:?objects=3&seed={i}",
                                "fps": fps,
                                "width": 640,
                                "height": 480,
                            }
                            for i in range(cameras)
                        ],
                        "broker": {
                            "processor_addresses": [f"127.0.0.1:{processor_port}"],
                            "max_in_flight": 32,
                            "include_image": False,
                        },
                        "processor": {
                            "listen": f"127.0.0.1:{processor_port}",
                            "builtin": "motion",
                            "workers": 2,
                        },
                        "alerts": {
                            "state_dir": str(work / "state"),
                            "reports_dir": str(work / "reports"),
                            "rules": [
                                {
                                    "name": "moving",
                                    "labels": ["motion"],
                                    "min_frames": 3,
                                    "window_s": 2.0,
                                    "cooldown_s": 10.0,
                                }
                            ],
                            "sinks": [{"type": "log", "name": "journal"}],
                            "clips": clips,
                        },
                        "metrics": {
                            "processor_port": ports[0],
                            "broker_port": ports[1],
                            "alerts_port": ports[2],
                        },
                        "logging": {"level": "warning"},
                    }
                )
            )
            config = load_config(config_path, {})
            create_topics(config.kafka)
            args = ["--config", str(config_path)]
            stages: dict[str, list[Stage]] = {
                "processor": [Stage.start("processor", [*args, "processor"], work, ports[0])],
                "broker": [Stage.start("broker", [*args, "broker"], work, ports[1])],
                "alerts": [Stage.start("alerts", [*args, "alerts"], work, ports[2])],
                "capture": [
                    Stage.start(
                        f"cam-{i}",
                        [*args, "capture", "--camera", f"cam-{i}"],
                        work,
                        ports[3 + i],
                        # Camera i serves on capture_port + i: give each its own free port.
                        {"VSPD_METRICS__CAPTURE_PORT": str(ports[3 + i] - i)},
                    )
                    for i in range(cameras)
                ],
            }
            children = [c for group in stages.values() for c in group]
            yield kafka, stages, config, work
        finally:
            for child in reversed(children):
                child.process.stop(30)
            kafka.stop()


def run_case(cameras: int, warmup_s: float, measure_s: float) -> list[str]:
    with pipeline(cameras) as (kafka, stages, config, work):
        time.sleep(warmup_s)  # a benchmark: let it settle, then measure a fixed span
        sent0 = sum(c.metric("vspd_capture_frames_sent_total") for c in stages["capture"])
        results0 = stages["broker"][0].metric("vspd_broker_results_total")
        cpu0 = {stage: sum(_cpu(c) for c in group) for stage, group in stages.items()}
        spans0 = _span_sums(stages["broker"][0])
        t0 = time.time_ns()
        time.sleep(measure_s)
        t1 = time.time_ns()
        sent = sum(c.metric("vspd_capture_frames_sent_total") for c in stages["capture"]) - sent0
        results = stages["broker"][0].metric("vspd_broker_results_total") - results0
        cpu = {stage: sum(_cpu(c) for c in group) - cpu0[stage] for stage, group in stages.items()}
        broker = stages["broker"][0]
        lag = broker.metric("vspd_broker_consumer_lag")
        # Means over the measured span: a frame's age when its call starts (camera,
        # encoding, Kafka, backlog) and the call as the broker sees it (gRPC both
        # ways plus the processor's time); the rest of a latency is the wait for
        # earlier frames of the partition (order) and the loop taking the answer.
        spans = {name: after - spans0[name] for name, after in _span_sums(broker).items()}
        to_call_ms = 1000 * spans["age_sum"] / max(spans["age_count"], 1)
        call_ms = 1000 * spans["call_sum"] / max(spans["call_count"], 1)
        # The alerts daemon's main loop per batch: it must stay well under a second.
        batch_p99_s = histogram_quantile(
            stages["alerts"][0].port, "vspd_alerts_batch_seconds", 0.99
        )
        try:
            records = read_to_end(kafka.bootstrap, config.kafka.results_topic)
        except KafkaException:
            records = []  # too overloaded to read the topic back: no latency figures
        decoded = [wire.decode_result(record.value) for record in records]
        measured = [r for r in decoded if t0 <= r.frame.capture_time_unix_ns <= t1]
        latencies = sorted(_latency_ms(r) for r in measured)
        # The split compares with the broker's metrics of the span: the same frames
        # are those written in it (a backlog from the start-up included).
        written = [_latency_ms(r) for r in decoded if t0 <= r.result_time_unix_ns <= t1]
        # What the processor itself took, as it reports: the floor of the latency.
        processing = sorted(r.processing_time_ns / 1e6 for r in measured)
        alert_ms = _alert_latencies(store.database_path(work / "state"), t0, t1)
    target = cameras * FPS
    rate = results / (measure_s or 1)
    keeps_up = rate >= 0.95 * target and lag < 2 * target
    per_frame = {stage: 1000 * seconds / max(results, 1) for stage, seconds in cpu.items()}
    return [
        str(cameras),
        f"{target:.0f}",
        f"{sent / measure_s:.0f}",
        f"{rate:.0f}",
        _pct(latencies, 50),
        _pct(latencies, 99),
        f"{_pct(processing, 50)} / {_pct(processing, 99)}",
        _where_it_goes(written, to_call_ms, call_ms),
        _over(latencies, processing, 50) + " / " + _over(latencies, processing, 99),
        _pct(alert_ms, 99),
        f"{batch_p99_s * 1000:.0f}",
        " / ".join(f"{per_frame[s]:.1f}" for s in ("capture", "broker", "processor", "alerts")),
        f"{lag:.0f}",
        "yes" if keeps_up else "NO",
    ]


@dataclass(frozen=True)
class Stage:
    """One daemon of the pipeline and the port of its /metrics."""

    process: DaemonProcess
    port: int

    @classmethod
    def start(
        cls, name: str, args: list[str], work: Path, port: int, env: dict[str, str] | None = None
    ) -> Stage:
        return cls(DaemonProcess(args, work / f"{name}.log", env).start(), port)

    def metric(self, name: str) -> float:
        return scrape_or_zero(self.port, name)


def _latency_ms(result: Any) -> float:
    return float(result.result_time_unix_ns - result.frame.capture_time_unix_ns) / 1e6


def _span_sums(broker: Stage) -> dict[str, float]:
    return {
        "age_sum": broker.metric("vspd_broker_frame_age_seconds_sum"),
        "age_count": broker.metric("vspd_broker_frame_age_seconds_count"),
        "call_sum": broker.metric("vspd_broker_processor_seconds_sum"),
        "call_count": broker.metric("vspd_broker_processor_seconds_count"),
    }


def _where_it_goes(latencies: list[float], to_call_ms: float, call_ms: float) -> str:
    """Mean latency split: capture to call start / the call / after it (order, the loop)."""
    if not latencies:
        return "-"
    mean = statistics.fmean(latencies)
    return f"{to_call_ms:.1f} / {call_ms:.1f} / {mean - to_call_ms - call_ms:.1f}"


def _cpu(child: Stage) -> float:
    try:
        return process_cpu_seconds(child.process.pid) if child.process.process else 0.0
    except OSError:
        return 0.0


def _alert_latencies(database: Path, t0: int, t1: int) -> list[float]:
    if not database.exists():
        return []
    connection = store.connect(database)
    try:
        return store.delivery_delays_ms(connection, t0, t1)
    finally:
        connection.close()


def _over(latencies: list[float], processing: list[float], pct: int) -> str:
    """Latency percentile minus the processor's own: what the pipeline adds."""
    if not latencies or not processing:
        return "-"
    return f"+{float(_pct(latencies, pct)) - float(_pct(processing, pct)):.0f}"


def _pct(values: list[float], pct: int) -> str:
    if not values:
        return "-"
    if pct == 50:
        return f"{statistics.median(values):.1f}"
    return f"{values[min(len(values) - 1, int(len(values) * pct / 100))]:.1f}"


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cameras", type=int, nargs="+", default=[8, 16, 32])
    parser.add_argument("--warmup", type=float, default=15)
    parser.add_argument("--seconds", type=float, default=30)
    args = parser.parse_args()
    rows: list[Any] = [run_case(n, args.warmup, args.seconds) for n in args.cameras]
    print(
        f"pipeline: 640x480 @ {FPS:.0f} fps per camera, motion processor, {args.seconds:.0f} s measured"
    )
    print_table(
        [
            "cameras",
            "target fps",
            "captured/s",
            "results/s",
            "lat p50 ms",
            "lat p99 ms",
            "processor p50/p99 ms",
            "mean ms: to call / call / after",
            "added p50/p99 ms",
            "alert p99 ms",
            "alerts batch p99 ms",
            "CPU ms/frame cap/brk/proc/alr",
            "lag",
            "keeps up",
        ],
        rows,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
