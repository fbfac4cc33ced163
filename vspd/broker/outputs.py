"""What the broker writes for a frame: a Result, a DeadLetter, or both, always small enough.

Every output fits the Kafka message limit: a result too large with its image
is written without it (and says so in an attribute); a dead letter too large
with the original message carries a truncated original (and says so in the
reason). A refusal for size can then never stop a partition.

Results go to the results partition with the number of their frame's
partition (modulo the results topic's size): a camera's results stay in one
partition, in order, and the broker that takes over a partition knows the one
results partition where its predecessor's results are (see recovery.py). The
header ``vspd-source`` (``topic:partition:offset``) names the frame's position.
"""

from __future__ import annotations

import math
import time

from vspd import wire
from vspd.broker.window import Output
from vspd.config.model import BrokerConfig, KafkaConfig
from vspd.v1 import frame_pb2, result_pb2

# Room for the record's key, headers and batch framing under message.max.bytes.
RECORD_OVERHEAD_BYTES = 4096
_FRAME_TAG = b"\x0a"  # field 1 (Result.frame), length-delimited
IMAGE_DROPPED = "vspd.image_dropped"


class OutputBuilder:
    def __init__(self, kafka: KafkaConfig, broker: BrokerConfig) -> None:
        self._kafka = kafka
        self._include_image = broker.include_image
        self.limit_bytes = kafka.message_max_bytes - RECORD_OVERHEAD_BYTES
        self.results_partitions = 0  # 0: unknown, the partitioner decides

    def limit_to(self, topic_max_message_bytes: int) -> None:
        """A topic that accepts less than the client (Apache Kafka's 1 MB default) sets the limit."""
        self.limit_bytes = min(self.limit_bytes, topic_max_message_bytes - RECORD_OVERHEAD_BYTES)

    def result(
        self,
        result: result_pb2.Result,
        frame: frame_pb2.Frame,
        frame_bytes: bytes,
        source: tuple[str, int, int],
    ) -> Output:
        """The result with its frame: the Kafka bytes of the frame are reused, not re-encoded."""
        result.result_time_unix_ns = time.time_ns()
        result.ClearField("frame")
        _tidy_detections(result)
        body = frame_bytes if self._include_image else _without_image(frame)
        value = _with_frame(result.SerializeToString(), body)
        if len(value) > self.limit_bytes and body is frame_bytes:
            result.attributes[IMAGE_DROPPED] = (
                f"result of {len(value)} bytes is over the limit of {self.limit_bytes}"
            )
            value = _with_frame(result.SerializeToString(), _without_image(frame))
        if len(value) > self.limit_bytes:
            # Only a processor that answers megabytes of detections gets here.
            failed = result_pb2.Result(
                status=result_pb2.STATUS_FAILED,
                status_reason=f"the processor's result of {len(value)} bytes is over the limit",
                processor_name=result.processor_name,
                result_time_unix_ns=result.result_time_unix_ns,
            )
            value = _with_frame(failed.SerializeToString(), _without_image(frame))
            result = failed
        status = {result_pb2.STATUS_OK: "ok", result_pb2.STATUS_FAILED: "failed"}.get(
            result.status, "skipped"
        )
        topic, partition, offset = source
        return Output(
            self._kafka.results_topic,
            frame.camera_id.encode(),
            value,
            counts_as=status,
            partition=partition % self.results_partitions if self.results_partitions else None,
            headers=(wire.source_header(topic, partition, offset),),
        )

    def dead_letter(
        self,
        stage: str,
        reason: str,
        key: bytes | None,
        value: bytes,
        source: tuple[str, int, int],
    ) -> Output:
        encoded = wire.encode_dead_letter(
            stage, reason, key, value, source, self.limit_bytes, time.time_ns()
        )
        return Output(
            self._kafka.dead_letter_topic,
            (key or b"")[:1024] or None,
            encoded,
            counts_as=stage,
            headers=(wire.source_header(*source),),
        )


def _unit(value: float) -> float:
    return min(1.0, max(0.0, value)) if math.isfinite(value) else 0.0


def _tidy_detections(result: result_pb2.Result) -> None:
    """A processor's numbers made valid before they reach the results topic: confidences and
    box corners within 0..1 (NaN becomes 0), corners in order. Every consumer validates results
    (vspd.wire), so one buggy processor must not turn whole results into dead letters."""
    for detection in result.detections:
        detection.confidence = _unit(detection.confidence)
        box = detection.box
        x1, x2 = sorted((_unit(box.x_min), _unit(box.x_max)))
        y1, y2 = sorted((_unit(box.y_min), _unit(box.y_max)))
        box.x_min, box.y_min, box.x_max, box.y_max = x1, y1, x2, y2


def _without_image(frame: frame_pb2.Frame) -> bytes:
    light = frame_pb2.Frame()
    light.CopyFrom(frame)
    light.ClearField("image")
    return light.SerializeToString()


def _with_frame(result_bytes: bytes, frame_bytes: bytes) -> bytes:
    """Result bytes plus field 1: protobuf merges concatenated fields, so this *is* the Result."""
    # One join: the frame's bytes (100 KB and more) are copied once.
    return b"".join((result_bytes, _FRAME_TAG, wire.varint(len(frame_bytes)), frame_bytes))
