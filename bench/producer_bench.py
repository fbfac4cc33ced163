"""What librdkafka's own threads cost per message, by producer setting, side by side.

An idempotent producer (vspd's are) that gets messages in bursts, as the broker's
results do, spins in its broker thread with 4 or 5 requests in flight: poll()
with a zero timeout until an answer comes. At most 3 in flight keeps the
pipelining and waits properly. This bench shows it without any vspd code:
one Producer, 100 KB messages at a paced rate in bursts, its threads' CPU per
message (the process's CPU minus the producing thread's own).

    python -m bench.producer_bench [--rate 1200] [--burst 64] [--messages 4000]
"""

from __future__ import annotations

import argparse
import os
import time
import uuid
from typing import Any

from confluent_kafka import Producer

from bench.support import cpu_seconds, positive, print_table, tansu
from tests.support.kafka import create_topics
from vspd.runtime.kafka import PRODUCER_MAX_IN_FLIGHT

PAYLOAD_BYTES = 100_000
SETTINGS: list[tuple[str, dict[str, Any]]] = [
    ("librdkafka defaults (5 in flight), linger 0", {}),
    ("4 in flight, linger 0", {"max.in.flight.requests.per.connection": 4}),
    (
        f"{PRODUCER_MAX_IN_FLIGHT} in flight, linger 0 (vspd)",
        {"max.in.flight.requests.per.connection": PRODUCER_MAX_IN_FLIGHT},
    ),
    ("3 in flight, linger 1", {"max.in.flight.requests.per.connection": 3, "linger.ms": 1}),
    ("1 in flight, linger 0", {"max.in.flight.requests.per.connection": 1}),
    ("not idempotent, 5 in flight", {"enable.idempotence": False}),
]


def produce_paced(
    bootstrap: str, settings: dict[str, Any], count: int, rate: float, burst: int
) -> tuple[float, float]:
    """Messages per second reached, and librdkafka's CPU µs per message."""
    topic = f"p-{uuid.uuid4().hex[:6]}"
    create_topics(bootstrap, [topic], 4)
    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 0,
            "message.max.bytes": 8_000_000,
            **settings,
        }
    )
    payload = os.urandom(PAYLOAD_BYTES)
    producer.produce(topic, payload, b"warm-up")
    producer.flush(30)
    started, cpu0, own0 = time.monotonic(), cpu_seconds(), time.thread_time()
    due = started
    for first in range(0, count, burst):
        for index in range(first, min(count, first + burst)):
            while True:
                try:
                    producer.produce(topic, payload, b"camera-%d" % (index % 8))
                    break
                except BufferError:
                    producer.poll(0.01)
        producer.poll(0)
        due += burst / rate
        if (wait := due - time.monotonic()) > 0:
            time.sleep(wait)
    producer.flush(60)
    elapsed = time.monotonic() - started
    librdkafka = (cpu_seconds() - cpu0) - (time.thread_time() - own0)
    return count / elapsed, librdkafka / count * 1e6


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rate", type=positive, default=1200, help="messages per second")
    parser.add_argument("--burst", type=positive, default=64, help="messages produced at once")
    parser.add_argument("--messages", type=positive, default=4000)
    args = parser.parse_args()
    rows = []
    with tansu() as kafka:
        for name, settings in SETTINGS:
            rate, cpu_us = produce_paced(
                kafka.bootstrap, settings, args.messages, args.rate, args.burst
            )
            rows.append([name, f"{rate:.0f}", f"{cpu_us:.0f}"])
    print(
        f"idempotent producer, {PAYLOAD_BYTES // 1000} KB messages in bursts of {args.burst} "
        f"at {args.rate}/s, Tansu on loopback"
    )
    print_table(["setting", "messages/s", "librdkafka CPU µs/message"], rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
