"""Broker: throughput against raw Kafka pass-through and against the ideal, 100 KB frames.

(a) raw pass-through: consume + produce with librdkafka, no gRPC, in-process, with
    vspd's producers' requests in flight; (a5) with librdkafka's default 5, where its
    idempotent producer spins (bench/producer_bench.py);
(b) `vspd broker` with an instant processor: frames/s and broker CPU µs/frame;
(c) a processor that takes 40 ms, max_in_flight 16, 4 partitions: fps vs the ideal 400;
(d) the same on 1 partition (one busy camera must get all 16 calls);
(e) per-camera ordered calls (the processor declares it), 8 cameras at 40 ms: ideal 200;
(f) kill -9 of the broker mid-stream, then a restart: seconds to its first result,
    with dynamic and with static group membership (group.instance.id).

Every vspd case runs with the broker's defaults except what the case names.
Before/after: run it from the other tree's directory (`cd /that/tree && python -m
bench.broker_bench`, with this file copied there): `python -m` puts the current
directory first, so PYTHONPATH alone would measure this tree twice.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from confluent_kafka import Consumer, KafkaException, Producer

from bench.support import cpu_seconds, print_table, tansu
from bench.support_proc import process_cpu_seconds
from tests.support.kafka import create_topics, read_to_end
from tests.support.metrics import scrape_or_zero
from tests.support.processes import DaemonProcess, wait_until
from tests.support.tansu import free_port
from vspd import wire
from vspd.config.toml_writer import render_toml
from vspd.images import jpeg_size
from vspd.runtime.kafka import PRODUCER_MAX_IN_FLIGHT
from vspd.v1 import frame_pb2, result_pb2

FRAME_BYTES = 100_000
SESSION_TIMEOUT_MS = 6000  # as in the tests: a new group's first assignment takes ~half


def frame_jpeg() -> bytes:
    """A real JPEG of about FRAME_BYTES (noise): random bytes after a JPEG marker may
    declare any size in their "header", and the processor rightly refuses most of
    them, so a benchmark on them measures refusals (as earlier figures here did)."""
    rng = np.random.default_rng(7)
    side = 200
    while True:
        image = rng.integers(0, 256, (side * 3 // 4, side, 3), dtype=np.uint8)
        ok, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 90])
        assert ok
        if len(encoded) >= FRAME_BYTES:
            return bytes(encoded.tobytes())
        side += 20


def fill(bootstrap: str, topic: str, count: int, cameras: int = 16) -> None:
    producer = Producer(
        {"bootstrap.servers": bootstrap, "linger.ms": 20, "message.max.bytes": 8_000_000}
    )
    payload = frame_jpeg()
    width, height = jpeg_size(payload) or (0, 0)
    for seq in range(count):
        camera = f"cam{seq % cameras}"
        frame = frame_pb2.Frame(
            camera_id=camera,
            session_id="bench",
            seq=seq // cameras,
            width=width,
            height=height,
            encoding=frame_pb2.ENCODING_JPEG,
            image=payload,
            capture_time_unix_ns=time.time_ns(),
        )
        while True:
            try:
                producer.produce(topic, frame.SerializeToString(), wire.frame_key(camera))
                break
            except BufferError:
                producer.poll(0.1)
    producer.flush(120)


def raw_passthrough(
    bootstrap: str, count: int, partitions: int, in_flight: int = PRODUCER_MAX_IN_FLIGHT
) -> tuple[float, float]:
    source, target = f"raw-in-{uuid.uuid4().hex[:6]}", f"raw-out-{uuid.uuid4().hex[:6]}"
    create_topics(bootstrap, [source, target], partitions)
    fill(bootstrap, source, count)
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": uuid.uuid4().hex,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "fetch.max.bytes": 52_428_800,
        }
    )
    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 5,
            "message.max.bytes": 8_000_000,
            "max.in.flight.requests.per.connection": in_flight,
        }
    )
    consumer.subscribe([source])
    done = 0
    started = cpu0 = None
    while done < count:
        for message in consumer.consume(500, 1.0):
            if message.error():
                continue
            if started is None:
                started, cpu0 = time.monotonic(), cpu_seconds()
            while True:
                try:
                    producer.produce(target, message.value(), message.key())
                    break
                except BufferError:
                    producer.poll(0.05)
            done += 1
        producer.poll(0)
        consumer.commit(asynchronous=True)
    producer.flush(60)
    with contextlib.suppress(KafkaException):  # nothing new since the last commit
        consumer.commit(asynchronous=False)
    assert started is not None
    assert cpu0 is not None
    elapsed = time.monotonic() - started
    consumer.close()
    return done / elapsed, (cpu_seconds() - cpu0) / done * 1e6


class Setup:
    """Topics, a config file, a processor and broker processes for one case."""

    def __init__(
        self,
        bootstrap: str,
        directory: Path,
        plugin: str,
        partitions: int,
        broker: dict[str, Any],
        processors: int = 1,
    ) -> None:
        self.directory = directory
        self.topics = {
            "frames_topic": f"f-{uuid.uuid4().hex[:6]}",
            "results_topic": f"r-{uuid.uuid4().hex[:6]}",
            "dead_letter_topic": f"d-{uuid.uuid4().hex[:6]}",
        }
        create_topics(bootstrap, list(self.topics.values()), partitions)
        processor_ports = [free_port() for _ in range(processors)]
        self.metrics_port = free_port()
        self.processor_metrics_ports = [free_port() for _ in range(processors)]
        data = {
            "kafka": {
                "bootstrap_servers": bootstrap,
                "session_timeout_ms": SESSION_TIMEOUT_MS,
                **self.topics,
            },
            "broker": {
                "processor_addresses": [f"127.0.0.1:{port}" for port in processor_ports],
                "group_id": uuid.uuid4().hex,
                **broker,
            },
            "processor": {
                "listen": f"127.0.0.1:{processor_ports[0]}",
                "plugin": plugin,
                "workers": 32,
            },
            "metrics": {
                "enabled": True,
                "broker_port": self.metrics_port,
                "processor_port": self.processor_metrics_ports[0],
            },
            "logging": {"level": "warning"},
        }
        self.config = directory / f"{uuid.uuid4().hex[:8]}.toml"
        self.config.write_text(render_toml(data))
        # Several processor processes (one config each) so that the processor side, one GIL
        # each, is not what the broker's figure measures.
        self.processors = []
        for index, (port, metrics_port) in enumerate(
            zip(processor_ports, self.processor_metrics_ports, strict=True)
        ):
            data["processor"]["listen"] = f"127.0.0.1:{port}"
            data["metrics"]["processor_port"] = metrics_port
            config = directory / f"{self.config.stem}-processor{index}.toml"
            config.write_text(render_toml(data))
            self.processors.append(
                DaemonProcess(
                    ["--config", str(config), "processor"], directory / f"processor{index}.log"
                ).start()
            )

    def broker(self) -> DaemonProcess:
        return DaemonProcess(
            ["--config", str(self.config), "broker"], self.directory / "broker.log"
        ).start()

    def results(self) -> float:
        return scrape_or_zero(self.metrics_port, "vspd_broker_results_total")

    def close(self, *daemons: DaemonProcess) -> None:
        for daemon in daemons:
            daemon.stop()
        for processor in self.processors:
            processor.stop()


@dataclass(frozen=True)
class Measured:
    fps: float
    cpu_us: float
    call_s: float  # mean processor call latency as the broker saw it
    plugin_s: float  # mean time in the plug-in, as the processor measured it

    def versus(self, in_flight: int, nominal_s: float) -> str:
        """Against the nominal ideal, and against the ideal at the latency the calls really had."""
        real = self.fps / (in_flight / self.call_s) if self.call_s else 0.0
        return (
            f"/ ideal {in_flight / nominal_s:.0f} = {self.fps * nominal_s / in_flight:.2f}; "
            f"calls took {self.call_s * 1000:.1f} ms (plug-in {self.plugin_s * 1000:.1f}): "
            f"{real:.2f} of that ideal"
        )


def vspd_broker(
    bootstrap: str,
    directory: Path,
    plugin: str,
    count: int,
    partitions: int = 4,
    cameras: int = 16,
    processors: int = 1,
    **broker: Any,
) -> Measured:
    setup = Setup(bootstrap, directory, plugin, partitions, broker, processors)
    fill(bootstrap, setup.topics["frames_topic"], count, cameras)
    broker_process = setup.broker()
    try:
        # Scraped seldom: every scrape costs the broker CPU that would count here.
        wait_until(lambda: setup.results() >= 1, 120, "first result", every_s=0.2)
        n0, cpu0 = setup.results(), process_cpu_seconds(broker_process.pid)
        wait_until(lambda: setup.results() >= count, 600, "all results", every_s=0.2)
        cpu = process_cpu_seconds(broker_process.pid) - cpu0
        calls = scrape_or_zero(setup.metrics_port, "vspd_broker_processor_seconds_count")
        latency = scrape_or_zero(setup.metrics_port, "vspd_broker_processor_seconds_sum") / max(
            calls, 1
        )
        ports = setup.processor_metrics_ports
        served = sum(scrape_or_zero(p, "vspd_processor_seconds_sum") for p in ports) / max(
            sum(scrape_or_zero(p, "vspd_processor_seconds_count") for p in ports), 1
        )
    finally:
        setup.close(broker_process)
    # Throughput from the results themselves: when the broker wrote the first and the last.
    results = [
        wire.decode_result(record.value)
        for record in read_to_end(bootstrap, setup.topics["results_topic"])
    ]
    not_ok = collections.Counter(
        (r.status, r.status_reason[:60]) for r in results if r.status != result_pb2.STATUS_OK
    )
    if not_ok:  # a benchmark of failures measures nothing: stop
        raise SystemExit(f"{len(results)} results, not ok: {dict(not_ok)}")
    times = sorted(r.result_time_unix_ns for r in results)
    fps = (len(times) - 1) / ((times[-1] - times[0]) / 1e9)
    return Measured(fps, cpu / (count - n0) * 1e6, latency, served)


def restart_after_kill(bootstrap: str, directory: Path, **broker: Any) -> float:
    """Seconds from starting a broker after a kill -9 of its predecessor to its first result."""
    setup = Setup(bootstrap, directory, "bench.plugins:forty_ms", 4, broker)
    fill(bootstrap, setup.topics["frames_topic"], 4000)
    first = setup.broker()
    second = None
    try:
        wait_until(lambda: setup.results() >= 200, 120, "results before the kill", every_s=0.2)
        first.kill9()
        started = time.monotonic()
        second = setup.broker()
        wait_until(lambda: setup.results() >= 1, 300, "first result after the restart")
        return time.monotonic() - started
    finally:
        setup.close(*(d for d in (second,) if d is not None))


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--frames", type=int, default=3000)
    parser.add_argument("--cases", default="a,b,c,d,e,f-dynamic,f-static")
    parser.add_argument(
        "--processors", type=int, default=2, help="processor processes for (b), (c), (d)"
    )
    args = parser.parse_args()
    cases = set(args.cases.split(","))
    rows: list[list[str]] = []
    slow = min(args.frames, 2000)
    with tansu() as kafka, tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        bootstrap = kafka.bootstrap
        raw_fps = 0.0
        if "a" in cases:
            raw_fps, raw_cpu = raw_passthrough(bootstrap, args.frames, 4)
            rows.append(["(a) raw Kafka consume+produce", f"{raw_fps:.0f}", f"{raw_cpu:.0f}", ""])
            spin_fps, spin_cpu = raw_passthrough(bootstrap, args.frames, 4, in_flight=5)
            rows.append(
                [
                    "(a5) the same, librdkafka's 5 in flight",
                    f"{spin_fps:.0f}",
                    f"{spin_cpu:.0f}",
                    f"CPU {spin_cpu / raw_cpu:.2f}x (a)",
                ]
            )
        if "b" in cases:
            b = vspd_broker(
                bootstrap,
                directory,
                "bench.plugins:instant",
                args.frames,
                processors=args.processors,
            )
            ratio = (
                f"(b)/(a) = {b.fps / raw_fps:.2f}, CPU {b.cpu_us / raw_cpu:.2f}x" if raw_fps else ""
            )
            rows.append(
                ["(b) vspd broker, instant processor", f"{b.fps:.0f}", f"{b.cpu_us:.0f}", ratio]
            )
        for case, partitions in (("c", 4), ("d", 1)):
            if case in cases:
                slow_case = vspd_broker(
                    bootstrap,
                    directory,
                    "bench.plugins:forty_ms",
                    slow,
                    partitions=partitions,
                    processors=args.processors,
                    max_in_flight=16,
                )
                rows.append(
                    [
                        f"({case}) 40 ms processor, 16 in flight, {partitions} partition(s)",
                        f"{slow_case.fps:.0f}",
                        f"{slow_case.cpu_us:.0f}",
                        slow_case.versus(16, 0.040),
                    ]
                )
        if "e" in cases:
            ordered = vspd_broker(
                bootstrap, directory, "bench.plugins:forty_ms_ordered", 1000, cameras=8
            )
            rows.append(
                [
                    "(e) ordered per camera, 8 cameras, 40 ms",
                    f"{ordered.fps:.0f}",
                    f"{ordered.cpu_us:.0f}",
                    ordered.versus(8, 0.040),
                ]
            )
        for case, settings in (
            ("f-dynamic", {"group_instance_id": ""}),
            ("f-static", {"group_instance_id": f"bench-{uuid.uuid4().hex[:6]}"}),
        ):
            if case in cases:
                # The tree under test may not know group_instance_id: pass it only if static.
                extra = settings if case == "f-static" else {}
                seconds = restart_after_kill(bootstrap, directory, **extra)
                rows.append(
                    [f"({case}) kill -9, restart -> first result", f"{seconds:.1f} s", "", ""]
                )
    print(f"broker, frames of {FRAME_BYTES // 1000} KB, Tansu on loopback, session timeout 6 s")
    print_table(["case", "frames/s", "broker CPU µs/frame", "ratio"], rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
