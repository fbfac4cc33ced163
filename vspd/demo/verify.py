"""After the demo: check from the topics, as any outside client would, that every
frame Kafka acknowledged has its result, in order per camera."""

from __future__ import annotations

import time
import uuid
from collections import defaultdict
from dataclasses import dataclass, field

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

from vspd import wire
from vspd.config.model import KafkaConfig
from vspd.runtime.kafka import consumer_settings


def read_all(
    kafka: KafkaConfig, topic: str, timeout_s: float = 60.0
) -> list[tuple[int, int, bytes | None]]:
    """(partition, offset, value) of every message in the topic now, in partition order.

    Done when every partition has reported its end (partition EOF), which
    comes from the fetch responses; ListOffsets watermarks are not relied on
    (some Kafka-protocol brokers answer them loosely).
    """
    settings = consumer_settings(kafka, "vspd-demo-verify", f"vspd-demo-verify-{uuid.uuid4()}")
    settings["enable.partition.eof"] = True
    consumer = Consumer(settings)
    try:
        metadata = consumer.list_topics(topic, timeout=10)
        partitions = sorted(metadata.topics[topic].partitions) if topic in metadata.topics else []
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
        records: list[tuple[int, int, bytes | None]] = []
        at_end: set[int] = set()
        deadline = time.monotonic() + timeout_s
        while len(at_end) < len(partitions) and time.monotonic() < deadline:
            message = consumer.poll(0.2)
            if message is None:
                continue
            error = message.error()
            if error is not None:
                if error.code() == KafkaError._PARTITION_EOF:
                    at_end.add(message.partition())
                continue
            at_end.discard(message.partition())
            records.append((message.partition(), message.offset(), message.value()))
        return sorted(records)
    finally:
        consumer.close()


@dataclass
class Verdict:
    frames: int = 0
    results: int = 0
    duplicates: int = 0
    missing: int = 0
    missing_examples: list[str] = field(default_factory=list)  # camera/session/seq, a few
    out_of_order_cameras: list[str] = field(default_factory=list)
    dead_letters: int = 0
    per_camera: dict[str, int] = field(default_factory=dict)
    # Cameras that delivered no frame at all, with what their source said.
    silent_cameras: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return (
            self.frames > 0
            and self.missing == 0
            and not self.out_of_order_cameras
            and not self.silent_cameras
        )

    def explanation(self) -> str:
        """Why the verdict is what it is, in one sentence."""
        if self.ok:
            return "Every captured frame got its result, in order."
        reasons = [
            f"camera {c} delivered no frames ({why})" for c, why in self.silent_cameras.items()
        ]
        if self.missing:
            reasons.append(f"{self.missing} frame(s) have no result")
        if self.out_of_order_cameras:
            reasons.append("results out of order for " + ", ".join(self.out_of_order_cameras))
        if not self.frames and not self.silent_cameras:
            reasons.append("no frame reached Kafka")
        return "; ".join(reasons) + "."


def verify(kafka: KafkaConfig) -> Verdict:
    verdict = Verdict()
    frames_by_camera: dict[str, list[wire.FrameId]] = defaultdict(list)
    for _partition, _offset, value in read_all(kafka, kafka.frames_topic):
        try:
            frame = wire.decode_frame(value)
        except wire.BadMessageError:
            continue
        frames_by_camera[frame.camera_id].append(wire.frame_id(frame))
        verdict.frames += 1
    results_by_camera: dict[str, list[wire.FrameId]] = defaultdict(list)
    for _partition, _offset, value in read_all(kafka, kafka.results_topic):
        try:
            result = wire.decode_result(value)
        except wire.BadMessageError:
            continue
        results_by_camera[result.frame.camera_id].append(wire.frame_id(result.frame))
        verdict.results += 1
    for camera, frames in frames_by_camera.items():
        seen: set[wire.FrameId] = set()
        unique = []
        for frame_id in results_by_camera.get(camera, []):
            if frame_id in seen:
                verdict.duplicates += 1
            else:
                seen.add(frame_id)
                unique.append(frame_id)
        captured = set(frames)
        lost = [f for f in frames if f not in seen]
        verdict.missing += len(lost)
        verdict.missing_examples += ["/".join(map(str, f)) for f in lost[:3]]
        verdict.per_camera[camera] = len(frames)
        # Results, first occurrences, must follow the frames' own order.
        if [f for f in unique if f in captured] != [f for f in frames if f in seen]:
            verdict.out_of_order_cameras.append(camera)
    verdict.dead_letters = len(read_all(kafka, kafka.dead_letter_topic))
    return verdict
