"""A processor and broker(s) around fresh topics, as separate processes, for broker tests."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.support.kafka import Record, produce, read_topic
from tests.support.processes import DaemonProcess
from tests.support.tansu import free_port
from vspd import wire
from vspd.v1 import result_pb2


def unique_results(records: list[Record]) -> int:
    return len({wire.frame_id(wire.decode_result(r.value).frame) for r in records})


def all_results(count: int) -> Callable[[list[Record]], bool]:
    return lambda records: unique_results(records) >= count


class Pipeline:
    """A processor and broker(s) around fresh topics, as separate processes."""

    def __init__(
        self,
        bootstrap: str,
        fresh_topics: Callable[..., dict[str, str]],
        write_config: Callable[..., Path],
        daemons: Callable[..., DaemonProcess],
        partitions: int = 4,
        broker: dict[str, Any] | None = None,
        processor: dict[str, Any] | None = None,
    ) -> None:
        self.bootstrap = bootstrap
        self.topics = fresh_topics(partitions=partitions)
        self.processor_port = free_port()
        self.daemons = daemons
        broker_settings = {
            "processor_addresses": [f"127.0.0.1:{self.processor_port}"],
            "group_id": f"broker-{self.topics['frames_topic']}",
            "max_in_flight": 32,
            "max_in_flight_per_partition": 16,
            "call_timeout_s": 5.0,
            "retry_initial_s": 0.05,
            "retry_max_s": 0.5,
        }
        broker_settings.update(broker or {})
        processor_settings = {
            "listen": f"127.0.0.1:{self.processor_port}",
            "plugin": "tests.plugins.sample:jitter",
            "workers": 16,
            "grace_period_s": 2.0,
        }
        processor_settings.update(processor or {})
        self.config = write_config(
            topics=self.topics, broker=broker_settings, processor=processor_settings
        )
        self.processor: DaemonProcess | None = None

    def start_processor(self) -> DaemonProcess:
        self.processor = self.daemons("--config", str(self.config), "processor", name="processor")
        self.processor.wait_for_log('"event": "serving"')
        return self.processor

    def start_broker(self, name: str = "broker") -> DaemonProcess:
        broker = self.daemons("--config", str(self.config), "broker", name=name)
        broker.wait_for_log('"event": "serving"')
        return broker

    def feed(self, messages: list[tuple[bytes | None, bytes]]) -> None:
        produce(self.bootstrap, self.topics["frames_topic"], messages)

    def results(
        self, until: Callable[[list[Record]], bool], timeout_s: float = 120
    ) -> list[Record]:
        return read_topic(self.bootstrap, self.topics["results_topic"], until, timeout_s)

    def dead_letters(self, count: int) -> list[result_pb2.DeadLetter]:
        records = read_topic(
            self.bootstrap, self.topics["dead_letter_topic"], lambda r: len(r) >= count
        )
        letters = []
        for record in records:
            letter = result_pb2.DeadLetter()
            letter.ParseFromString(record.value)
            letters.append(letter)
        return letters
