"""Broker: throughput against raw Kafka pass-through, on one broker, 100 KB frames.

(a) raw pass-through: consume + produce with librdkafka, no gRPC, in-process;
(b) `vspd broker` with an instant processor: frames/s and broker CPU µs/frame;
(c) `vspd broker` with a processor that takes 40 ms, max_in_flight 16: fps vs the ideal 400.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

from confluent_kafka import Consumer, Producer

from bench.support import cpu_seconds, print_table, tansu
from bench.support_proc import process_cpu_seconds, scrape
from tests.support.kafka import create_topics
from tests.support.processes import DaemonProcess, wait_until
from tests.support.tansu import free_port
from vspd import wire
from vspd.v1 import frame_pb2

FRAME_BYTES = 100_000
PARTITIONS = 4


def fill(bootstrap: str, topic: str, count: int) -> None:
    producer = Producer(
        {"bootstrap.servers": bootstrap, "linger.ms": 20, "message.max.bytes": 8_000_000}
    )
    payload = b"\xff\xd8\xff" + os.urandom(FRAME_BYTES - 3)
    for seq in range(count):
        camera = f"cam{seq % 16}"
        frame = frame_pb2.Frame(
            camera_id=camera,
            session_id="bench",
            seq=seq // 16,
            width=640,
            height=480,
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


def raw_passthrough(bootstrap: str, source: str, count: int) -> tuple[float, float]:
    target = f"raw-out-{uuid.uuid4().hex[:6]}"
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
    producer.flush(60)
    consumer.commit(asynchronous=False)
    assert started is not None
    assert cpu0 is not None
    elapsed = time.monotonic() - started
    consumer.close()
    return done / elapsed, (cpu_seconds() - cpu0) / done * 1e6


def vspd_broker(
    bootstrap: str, directory: Path, plugin: str, count: int, max_in_flight: int
) -> tuple[float, float]:
    topics = [f"f-{uuid.uuid4().hex[:6]}", f"r-{uuid.uuid4().hex[:6]}", f"d-{uuid.uuid4().hex[:6]}"]
    create_topics(bootstrap, topics, PARTITIONS)
    fill(bootstrap, topics[0], count)
    processor_port, metrics_port = free_port(), free_port()
    config = directory / f"{plugin.replace(':', '_')}.toml"
    config.write_text(
        f'[kafka]\nbootstrap_servers = "{bootstrap}"\nframes_topic = "{topics[0]}"\nresults_topic = "{topics[1]}"\n'
        f'dead_letter_topic = "{topics[2]}"\nsession_timeout_ms = 6000\n'
        f'[broker]\nprocessor_addresses = ["127.0.0.1:{processor_port}"]\nmax_in_flight = {max_in_flight}\n'
        f'max_in_flight_per_partition = {max_in_flight}\ngroup_id = "{uuid.uuid4().hex}"\ninclude_image = true\n'
        f'[processor]\nlisten = "127.0.0.1:{processor_port}"\nplugin = "{plugin}"\nworkers = 32\n'
        f"[metrics]\nenabled = true\nbroker_port = {metrics_port}\nprocessor_port = {free_port()}\n"
        '[logging]\nlevel = "warning"\n'
    )
    processor = DaemonProcess(
        ["--config", str(config), "processor"], directory / "processor.log"
    ).start()
    broker = DaemonProcess(["--config", str(config), "broker"], directory / "broker.log").start()
    try:
        wait_until(lambda: _results(metrics_port) >= 1, 120, "first result")
        t0, n0, cpu0 = time.monotonic(), _results(metrics_port), process_cpu_seconds(broker.pid)
        wait_until(lambda: _results(metrics_port) >= count, 600, "all results")
        elapsed = time.monotonic() - t0
        cpu = process_cpu_seconds(broker.pid) - cpu0
        done = count - n0
    finally:
        broker.stop()
        processor.stop()
    return done / elapsed, cpu / done * 1e6


def _results(port: int) -> float:
    try:
        return scrape(port, "vspd_broker_results_total")
    except OSError:
        return 0.0


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--frames", type=int, default=3000)
    args = parser.parse_args()
    with tansu() as broker, tempfile.TemporaryDirectory() as directory:
        source = f"raw-in-{uuid.uuid4().hex[:6]}"
        create_topics(broker.bootstrap, [source], PARTITIONS)
        fill(broker.bootstrap, source, args.frames)
        raw_fps, raw_cpu = raw_passthrough(broker.bootstrap, source, args.frames)
        instant_fps, instant_cpu = vspd_broker(
            broker.bootstrap, Path(directory), "bench.plugins:instant", args.frames, 64
        )
        slow_frames = min(args.frames, 2000)
        slow_fps, slow_cpu = vspd_broker(
            broker.bootstrap, Path(directory), "bench.plugins:forty_ms", slow_frames, 16
        )
    print(
        f"broker, {args.frames} frames of {FRAME_BYTES // 1000} KB, {PARTITIONS} partitions, Tansu on loopback"
    )
    print_table(
        ["case", "frames/s", "CPU µs/frame", "ratio"],
        [
            ["(a) raw Kafka consume+produce", f"{raw_fps:.0f}", f"{raw_cpu:.0f}", ""],
            [
                "(b) vspd broker, instant processor",
                f"{instant_fps:.0f}",
                f"{instant_cpu:.0f}",
                f"(b)/(a) = {instant_fps / raw_fps:.2f}",
            ],
            [
                "(c) vspd broker, 40 ms processor, 16 in flight",
                f"{slow_fps:.0f}",
                f"{slow_cpu:.0f}",
                f"(c)/400 = {slow_fps / 400:.2f}",
            ],
        ],
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
