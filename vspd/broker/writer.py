"""Writing and counting: finished heads go to Kafka in order; what Kafka acknowledged is counted.

Kafka refusing an output for good (authorization, a topic limit vspd could
not learn, ...) halts that partition's window: nothing after it is written
again, in the main loop, in drain or on revocation, and its offset is never
committed; the broker then stops with a one-line reason. Refusals for size
cannot happen for outputs built by OutputBuilder, which fit by construction;
a local size refusal at produce() time is turned into a dead letter instead.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import structlog
from confluent_kafka import KafkaError, KafkaException, Message, Producer

from vspd.broker.errors import ResultNotWrittenError
from vspd.broker.metrics import BrokerMetrics
from vspd.broker.outputs import OutputBuilder
from vspd.broker.partition import PartitionState
from vspd.broker.window import Output, Slot
from vspd.tracking.tracker import Tracker

log = structlog.get_logger(__name__)

FLUSH_TIMEOUT_S = 30.0


class ResultWriter:
    def __init__(
        self,
        producer: Producer,
        outputs: OutputBuilder,
        dead_letter_topic: str,
        metrics: BrokerMetrics,
        tracker: Tracker | None = None,
    ) -> None:
        self._tracker = tracker
        self._producer = producer
        self._outputs = outputs
        self._dead_letter_topic = dead_letter_topic
        self._metrics = metrics
        self.fatal: ResultNotWrittenError | None = None

    def write_heads(self, states: Iterable[PartitionState]) -> int:
        written = 0
        for state in states:
            window = state.window
            for slot in window.producible():
                if window.halted:
                    break  # a refusal arrived while this run was being written
                if slot.result is not None:
                    self._finish(state, slot)
                for output in slot.outputs:
                    self._produce(output, state, slot)
                window.produced(slot)
                written += 1
        return written  # delivery reports are served by poll(), once a loop

    def _finish(self, state: PartitionState, slot: Slot) -> None:
        """A processor's answer becomes its output here, at the in-order head of the partition:
        a camera's results pass in capture order, so this is where tracks are made."""
        result, frame = slot.result, slot.frame
        slot.result = slot.frame = None
        if result is None or frame is None:
            raise RuntimeError(f"slot {slot.offset} has no answer or frame to write")
        if self._tracker is not None:
            self._tracker.annotate(frame.camera_id, frame.capture_time_unix_ns, result)
        source = (state.topic, state.partition, slot.offset)
        slot.outputs = [self._outputs.result(result, frame, slot.value, source)]

    def poll(self) -> None:
        self._producer.poll(0)

    def flush(self) -> int:
        remaining: int = self._producer.flush(FLUSH_TIMEOUT_S)
        return remaining

    def _produce(self, output: Output, state: PartitionState, slot: Slot) -> None:
        window = state.window
        # What the report needs, not the output: its bytes are librdkafka's until acknowledged.
        topic, counts_as = output.topic, output.counts_as

        def delivered(error: KafkaError | None, _message: Message) -> None:
            if error is not None:
                window.halt()
                if self.fatal is None:
                    self.fatal = ResultNotWrittenError(
                        f"Kafka refused a message for {topic} ({error.str()}); "
                        f"nothing from offset {slot.offset} of partition {state.partition} "
                        "on is written or committed"
                    )
                return
            if window.halted:
                return  # this slot stays unacknowledged: no commit passes the refusal
            window.acknowledged(slot)
            self._count(topic, counts_as)

        kwargs: dict[str, Any] = {
            "value": output.value,
            "key": output.key,
            "headers": list(output.headers) if output.headers else None,
            "on_delivery": delivered,
        }
        if output.partition is not None:
            kwargs["partition"] = output.partition
        while True:
            try:
                self._producer.produce(output.topic, **kwargs)
            except BufferError:
                self._producer.poll(0.05)  # librdkafka's queue is full: let it drain
                continue
            except KafkaException as exc:
                error: KafkaError = exc.args[0]
                if error.code() != KafkaError.MSG_SIZE_TOO_LARGE or output.topic == (
                    self._dead_letter_topic
                ):
                    raise ResultNotWrittenError(
                        f"cannot write {len(output.value)} bytes to {output.topic}: {error.str()}"
                    ) from None
                # Refused before it left: still in order, so its place gets a dead letter.
                source = (state.topic, state.partition, slot.offset)
                output = self._outputs.dead_letter(
                    "broker.write", f"result refused: {error.str()}", slot.key, output.value, source
                )
                kwargs.update(value=output.value, key=output.key, headers=list(output.headers))
                kwargs.pop("partition", None)
                topic, counts_as = output.topic, output.counts_as
                continue
            return

    def _count(self, topic: str, counts_as: str) -> None:
        """Metrics count what Kafka has acknowledged, not what was merely computed."""
        if topic == self._dead_letter_topic:
            self._metrics.dead_letters.labels(counts_as).inc()
        else:
            self._metrics.results.labels(counts_as).inc()
