"""`vspd alerts`: results -> rules -> events (each raised once) -> sinks; reports every period.

A sink gets each event at least once: a crash between its acceptance and the
store's record of it resends, with the same X-Vspd-Event-Id for the receiver
to drop.

Per batch of results, one SQLite transaction records everything they change
(including the next offset per partition, which makes replays harmless); the
Kafka offsets are committed only after it. Delivery runs on one thread per
sink, from the store, so a dead sink delays only itself.

A result that is malformed, or whose handling fails for any reason, is
rolled back alone (a savepoint), counted and dead-lettered (stage
``alerts.decode`` or ``alerts.process``); the batch and the daemon go on.
"""

from __future__ import annotations

import argparse
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

import structlog
from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition
from prometheus_client import CollectorRegistry

from vspd import wire
from vspd.alerts import snapshots, store
from vspd.alerts.clips import DUE_GRACE_NS, ClipWorker
from vspd.alerts.delivery import DeliveryWorker
from vspd.alerts.errors import AlertsError
from vspd.alerts.home_assistant import HomeAssistantBridge
from vspd.alerts.live import LiveAlert, LiveState
from vspd.alerts.metrics import AlertsMetrics
from vspd.alerts.report_worker import ReportWorker
from vspd.alerts.rules import ObjectState, Rule, RuleState, Trigger, build_rules, forget_stale
from vspd.alerts.sinks import build_sink
from vspd.alerts.web.server import LivePage
from vspd.config import VspdConfig
from vspd.runtime.kafka import KafkaErrorLog, consumer_settings, producer_settings
from vspd.runtime.lifecycle import StopFlag
from vspd.runtime.metrics import counted
from vspd.runtime.readiness import AssignmentWait, Readiness
from vspd.runtime.service import serve
from vspd.v1 import frame_pb2, result_pb2

log = structlog.get_logger(__name__)

BATCH = 200
POLL_S = 0.2
# An event's deliveries wait for its snapshot, drawn after the transaction
# commits (drawing inside would hold the store's write lock that the delivery
# threads wait for). Should the daemon die in between, they go after this
# long, without the picture.
SNAPSHOT_HOLD_S = 30.0
# A seq this far behind the last one of its camera and session is not taken
# for an upstream duplicate, and one this far ahead does not count as a gap:
# forged seqs can neither silence a camera nor fill a report with gaps.
DUPLICATE_WINDOW = 10_000
MAX_GAP = 100_000


@dataclass(frozen=True)
class _Drawing:
    event_id: int
    result: result_pb2.Result
    highlight: set[str]
    key: str


class AlertsDaemon:
    name = "alerts"

    def __init__(self, config: VspdConfig, registry: CollectorRegistry) -> None:
        self.config = config
        self.settings = config.alerts
        self._kafka_errors = KafkaErrorLog("vspd-alerts")
        self.metrics = AlertsMetrics(registry)
        self.state_dir = Path(self.settings.state_dir)
        self.reports_dir = Path(self.settings.reports_dir)
        self.database = store.database_path(self.state_dir)
        self.connection: sqlite3.Connection | None = None
        self.rules: list[Rule] = build_rules(self.settings.rules)
        self.rule_states: dict[tuple[str, str], RuleState] = {}
        # (rule, camera) -> track id -> the object's state, for rules over objects.
        self.object_states: dict[tuple[str, str], dict[int, ObjectState]] = {}
        self.workers: list[DeliveryWorker] = []
        self.report_worker = ReportWorker(self.database, self.settings)
        self.clip_worker = ClipWorker(config, self.database, self._clip_made, self.metrics)
        self._source: tuple[str, int] | None = None  # the frame of the result in hand
        self._drawings: list[_Drawing] = []  # events of this batch whose snapshot is due
        self._consumed: dict[tuple[str, int], int] = {}
        # A `log` sink writes each alert to the journal: no second line for it.
        self._log_sinks = {sink.name for sink in self.settings.sinks if sink.type == "log"}
        # What each camera shows now, for the live page and Home Assistant (when either is on).
        self._discovery = [s for s in self.settings.sinks if s.type == "mqtt" and s.discovery]
        self.live = LiveState() if config.web.enabled or self._discovery else None
        self.bridges: list[HomeAssistantBridge] = []
        self.page: LivePage | None = None
        self.assignment = AssignmentWait(
            self.settings.group_id, config.kafka.results_topic, self.metrics.assigned
        )
        self.producer = Producer(
            producer_settings(config.kafka, "vspd-alerts", error_cb=self._on_kafka_error)
        )
        self.consumer = Consumer(
            consumer_settings(
                config.kafka,
                "vspd-alerts",
                self.settings.group_id,
                error_cb=self._on_kafka_error,
            )
        )

    # -- lifecycle ---------------------------------------------------------
    def start(self) -> None:
        try:
            self.connection = store.connect(self.database)
        except (OSError, sqlite3.Error) as exc:
            raise AlertsError(
                f"cannot open the store {self.database}: {exc} (is state_dir writable by this user?)"
            ) from None
        self._consumed = store.consumed_offsets(self.connection)
        for key, saved_objects in store.object_states(self.connection).items():
            self.object_states[key] = {
                track_id: ObjectState(
                    o.first_seen_ns,
                    o.last_seen_ns,
                    o.inside_since_ns,
                    o.last_point,
                    o.alerted,
                    False,
                )
                for track_id, o in saved_objects.items()
            }
        for key, saved in store.rule_states(self.connection).items():
            self.rule_states[key] = RuleState(
                matches=saved.matches, last_alert_ns=saved.last_alert_ns
            )
        for sink_config in self.settings.sinks:
            worker = DeliveryWorker(
                build_sink(sink_config, self.settings),
                sink_config,
                self.settings,
                self.database,
                self.metrics.delivered,
                self.metrics.failed,
                self.metrics.pending,
            )
            worker.start()
            self.workers.append(worker)
        self.report_worker.start()
        if self.settings.clips:
            self.clip_worker.start()
        self._start_live_views()
        self.consumer.subscribe([self.config.kafka.results_topic], on_revoke=self._on_revoke)
        log.info(
            "consuming",
            topic=self.config.kafka.results_topic,
            store=str(self.database),
            rules=[rule.config.name for rule in self.rules],
            sinks=[worker.sink.name for worker in self.workers],
        )

    def step(self) -> None:
        received = self.consumer.consume(BATCH, POLL_S)
        if received:
            self._kafka_errors.reached()
        else:
            self._kafka_errors.recheck(self._ask_kafka)
        self.assignment.update(len(self.consumer.assignment()))
        messages = [m for m in received if self._usable(m)]
        self.producer.poll(0)
        if messages:
            started = time.perf_counter()
            created = self._record(messages)
            self._draw_snapshots()
            self._commit_offsets(messages)
            self.metrics.batch_seconds.observe(time.perf_counter() - started)
            if created:
                self._wake_workers()
                self.clip_worker.wake.set()

    def _wake_workers(self) -> None:
        for worker in self.workers:
            worker.wake.set()

    def _clip_made(self, event: store.EventRecord, clip: store.MadeClip) -> None:
        """On the clip worker's thread: its follow-ups are due, the live page may show it."""
        self._wake_workers()
        if self.live is not None and clip.path is not None:
            self.live.clip_made(event.camera, event.key, clip.path)

    def _start_live_views(self) -> None:
        if self.live is None:
            return
        for sink in self._discovery:
            bridge = HomeAssistantBridge(
                sink, self.rules, [c.id for c in self.config.cameras], self.live, self.database
            )
            bridge.start()
            self.bridges.append(bridge)
        if self.config.web.enabled:
            page = LivePage(self.config, self.live)
            try:
                page.start()
                self.page = page
            except OSError as exc:
                # The page is for people looking; a taken port must not stop the alerts.
                log.error(  # noqa: TRY400 - the reason is enough, no traceback
                    "live page unavailable",
                    host=self.config.web.host,
                    port=self.config.web.port,
                    error=exc.strerror,
                )

    def drain(self) -> None:
        if self.page is not None:
            self.page.stop()
        for bridge in self.bridges:
            bridge.stop()
        self.clip_worker.stop()
        for worker in self.workers:
            worker.stop()
        self.report_worker.stop()  # renders what changed a last time
        self.producer.flush(10)
        self.consumer.close()
        if self.connection is not None:
            self.connection.close()
            self.connection = None

    # -- consuming -----------------------------------------------------------
    def _usable(self, message: Message) -> bool:
        error = message.error()
        if error is not None:
            if error.code() != KafkaError._PARTITION_EOF:
                log.warning("consume error", error=error.str())
            return False
        return True

    def _record(self, messages: list[Message]) -> int:
        """Everything this batch changes, in one transaction; returns events created."""
        assert self.connection is not None  # noqa: S101 - start() opened it
        created = 0
        self._drawings.clear()
        with store.transaction(self.connection) as connection:
            for message in messages:
                position = (message.topic(), message.partition())
                if message.offset() < self._consumed.get(position, -1):
                    self.metrics.duplicates.labels("replayed").inc()
                    continue  # handled before a crash: its effects are in the store
                self._consumed[position] = message.offset() + 1
                created += self._record_one(connection, message)
            store.save_consumed(connection, self._consumed)
            self._save_rule_states(connection)
            self._save_object_states(connection)
        return created

    def _record_one(self, connection: sqlite3.Connection, message: Message) -> int:
        """One result, isolated: whatever goes wrong is rolled back alone and dead-lettered."""
        try:
            result = wire.decode_result(message.value())
        except wire.BadMessageError as exc:
            self._reject(message, "alerts.decode", str(exc))
            return 0
        drawings = len(self._drawings)
        position = wire.source_of(message.headers())
        self._source = position[:2] if position is not None else None
        try:
            with store.isolated(connection):
                return self._record_result(connection, result)
        except Exception as exc:  # noqa: BLE001 - one bad result must not stop the daemon
            del self._drawings[drawings:]  # its events were rolled back with it
            self._reject(message, "alerts.process", f"{type(exc).__name__}: {exc}")
            return 0

    def _reject(self, message: Message, stage: str, reason: str) -> None:
        self.metrics.bad.inc()
        log.warning(
            "result rejected",
            stage=stage,
            partition=message.partition(),
            offset=message.offset(),
            reason=reason[:500],
        )
        letter = wire.encode_dead_letter(
            stage,
            reason,
            message.key(),
            message.value() or b"",
            (message.topic(), message.partition(), message.offset()),
            self.config.kafka.message_max_bytes - 4096,
            time.time_ns(),
        )
        try:
            self.producer.produce(
                self.config.kafka.dead_letter_topic, value=letter, key=(message.key() or b"")[:1024]
            )
        except (BufferError, KafkaException) as exc:
            log.warning("cannot dead-letter a rejected result", error=str(exc))

    def _record_result(self, connection: sqlite3.Connection, result: result_pb2.Result) -> int:
        frame = result.frame
        last = store.last_seq(connection, frame.camera_id, frame.session_id)
        if last is not None and last - DUPLICATE_WINDOW < frame.seq <= last:
            self.metrics.duplicates.labels("duplicate").inc()
            return 0  # written twice upstream (a broker that lost its partition): counted once
        gaps = 0
        if last is not None and last < frame.seq <= last + MAX_GAP:
            gaps = frame.seq - last - 1
        if last is None or frame.seq > last:
            store.save_last_seq(connection, frame.camera_id, frame.session_id, frame.seq)
        self.metrics.results.inc()
        self._aggregate(connection, result, gaps)
        if self.live is not None:
            holding = [
                rule.config.name
                for rule in self.rules
                if rule.applies_to(frame.camera_id) and rule.matching(result)
            ]
            self.live.observe(result, gaps, holding)
        created = 0
        for rule in self.rules:
            if not rule.applies_to(frame.camera_id):
                continue
            base = f"{rule.config.name}/{frame.camera_id}/{frame.session_id}/{frame.seq}"
            if rule.per_object:
                objects = self.object_states.setdefault((rule.config.name, frame.camera_id), {})

                def url_of(track: int, base: str = base) -> str:
                    return self._snapshot_url(frame, f"{base}/{track}")

                crossed: list[str] = []
                for per_object in rule.evaluate_objects(result, objects, url_of, crossed):
                    key = f"{base}/{per_object.track_id}"
                    created += self._raise_event(connection, result, per_object, key)
                store.add_crossings(
                    connection,
                    frame.camera_id,
                    frame.capture_time_unix_ns,
                    [(rule.config.name, direction) for direction in crossed],
                )
                continue
            state = self.rule_states.setdefault((rule.config.name, frame.camera_id), RuleState())
            trigger = rule.evaluate(result, state, self._snapshot_url(frame, base))
            if trigger is not None:
                created += self._raise_event(connection, result, trigger, base)
        return created

    def _snapshot_url(self, frame: frame_pb2.Frame, key: str) -> str:
        if not self.settings.snapshot_base_url:
            return ""
        base = self.settings.snapshot_base_url.rstrip("/")
        return f"{base}/{snapshots.relative_path(frame.camera_id, key)}"

    def _aggregate(
        self, connection: sqlite3.Connection, result: result_pb2.Result, gaps: int
    ) -> None:
        frame = result.frame
        bucket = frame.capture_time_unix_ns // store.BUCKET_NS
        status = result.status
        store.add_frame(
            connection,
            store.FrameOutcome(
                camera=frame.camera_id,
                bucket=bucket,
                ok=status == result_pb2.STATUS_OK,
                failed=status == result_pb2.STATUS_FAILED,
                skipped=status == result_pb2.STATUS_SKIPPED,
                gaps=gaps,
                latency_ms=max(
                    0.0, (result.result_time_unix_ns - frame.capture_time_unix_ns) / 1e6
                ),
            ),
        )
        per_label: dict[str, tuple[int, float]] = {}
        for detection in result.detections:
            count, best = per_label.get(detection.label, (0, 0.0))
            per_label[detection.label] = (count + 1, max(best, detection.confidence))
        store.add_detections(connection, frame.camera_id, bucket, per_label)
        tracks = [(d.track_id, d.label) for d in result.detections if d.HasField("track_id")]
        if tracks:
            store.see_objects(connection, frame.camera_id, frame.capture_time_unix_ns, tracks)

    def _raise_event(
        self, connection: sqlite3.Connection, result: result_pb2.Result, trigger: Trigger, key: str
    ) -> int:
        frame = result.frame
        snapshot = None
        if frame.image:  # drawn after the commit (_draw_snapshots), where the store will say
            snapshot = str(Path("snapshots") / snapshots.relative_path(frame.camera_id, key))
        sinks = trigger.rule.sinks or [worker.sink.name for worker in self.workers]
        limit_s = trigger.rule.max_alert_age_s
        age_s = (time.time_ns() - frame.capture_time_unix_ns) / 1e9
        too_old = bool(limit_s) and age_s > limit_s
        if too_old:
            sinks = []  # stored and reported; nobody is woken for it
        event = store.NewEvent(
            rule=trigger.rule.name,
            camera=frame.camera_id,
            session=frame.session_id,
            seq=frame.seq,
            time_ns=frame.capture_time_unix_ns,
            label=trigger.label,
            confidence=trigger.confidence,
            count=trigger.count,
            severity=trigger.rule.severity,
            message=trigger.message,
            snapshot=snapshot,
            detections=trigger.detections,
            track_id=trigger.track_id if trigger.track_id is not None else -1,
            dwell_s=trigger.dwell_s,
            crossed_to=trigger.crossed_to,
        )
        event_id = store.insert_event(connection, event, sinks)
        if event_id is None:
            return 0  # this event exists already: no second one, no second delivery
        if self.settings.clips:
            self._request_clip(connection, event_id, frame)
        if self.live is not None:
            self.live.alert(
                frame.camera_id,
                LiveAlert(
                    key=key,
                    rule=trigger.rule.name,
                    label=trigger.label,
                    message=trigger.message,
                    severity=trigger.rule.severity,
                    time_ns=frame.capture_time_unix_ns,
                    snapshot=None,
                ),
            )
        if snapshot is not None:
            store.hold_deliveries(connection, event_id, store.now_ns() + int(SNAPSHOT_HOLD_S * 1e9))
            highlight = {d["label"] for d in trigger.detections}
            self._drawings.append(_Drawing(event_id, result, highlight, key))
        for sink in sinks:
            given_up = store.give_up_beyond(connection, sink, self.settings.max_pending_per_sink)
            if given_up:
                log.error(
                    "too many pending deliveries; oldest given up", sink=sink, given_up=given_up
                )
        self.metrics.events.labels(trigger.rule.name).inc()
        if too_old:
            self.metrics.not_notified.labels(trigger.rule.name, "too_old").inc()
            log.info(
                "alert raised, not sent: too old",
                event_id=key,
                label=trigger.label,
                age_s=round(age_s),
                max_alert_age_s=limit_s,
                hint="a backlog, or the camera's clock is behind",
            )
            return 1
        if not any(name in self._log_sinks for name in sinks):  # else the log sink says it
            log.info("alert raised", event_id=key, label=trigger.label, sinks=sinks)
        return 1

    def _request_clip(
        self, connection: sqlite3.Connection, event_id: int, frame: frame_pb2.Frame
    ) -> None:
        """The clip is due once its after-window has passed (later frames are in Kafka by then)."""
        before_ns = int(self.settings.clip_before_s * 1e9)
        after_ns = int(self.settings.clip_after_s * 1e9)
        now = store.now_ns()
        behind_ns = max(0, now - frame.capture_time_unix_ns)  # a backlog: they are there already
        due = now + max(0, after_ns - behind_ns) + DUE_GRACE_NS
        start = frame.capture_time_unix_ns - before_ns
        store.request_clip(
            connection, event_id, self._source, start, frame.capture_time_unix_ns + after_ns, due
        )

    def _save_rule_states(self, connection: sqlite3.Connection) -> None:
        dirty = [(key, state) for key, state in self.rule_states.items() if state.dirty]
        store.save_rule_states(
            connection,
            {
                key: store.RuleStateRecord(state.matches, state.last_alert_ns)
                for key, state in dirty
            },
        )
        for _key, state in dirty:
            state.dirty = False

    def _save_object_states(self, connection: sqlite3.Connection) -> None:
        changed: dict[tuple[str, str, int], store.ObjectRecord] = {}
        forgotten: list[tuple[str, str, int]] = []
        for (rule, camera), objects in self.object_states.items():
            newest = max((o.last_seen_ns for o in objects.values()), default=0)
            forgotten += [(rule, camera, tid) for tid in forget_stale(objects, newest)]
            for track_id, state in objects.items():
                if state.dirty:
                    changed[(rule, camera, track_id)] = store.ObjectRecord(
                        state.first_seen_ns,
                        state.last_seen_ns,
                        state.inside_since_ns,
                        state.last_point,
                        state.alerted,
                    )
                    state.dirty = False
        store.save_object_states(connection, changed, forgotten)

    def _commit_offsets(self, messages: list[Message]) -> None:
        last: dict[tuple[str, int], int] = {}
        for message in messages:
            last[(message.topic(), message.partition())] = message.offset() + 1
        offsets = [
            TopicPartition(topic, partition, offset) for (topic, partition), offset in last.items()
        ]
        try:
            self.consumer.commit(offsets=offsets, asynchronous=True)
        except KafkaException as exc:
            # Harmless: a replay is recognised by the store.
            log.warning("commit failed", error=str(exc))

    def _on_revoke(self, consumer: Consumer, _partitions: list[TopicPartition]) -> None:
        pass  # every consumed batch is committed right after its transaction

    def _on_kafka_error(self, error: KafkaError) -> None:
        self._kafka_errors(error)  # named (authentication, certificate, ...), once a minute

    # -- snapshots ---------------------------------------------------------------
    def _draw_snapshots(self) -> None:
        """Draw the batch's snapshots outside the transaction, then let their deliveries go."""
        if not self._drawings or self.connection is None:
            return
        drawn: dict[int, str | None] = {}
        for drawing in self._drawings:
            frame = drawing.result.frame
            try:
                jpeg = snapshots.draw(drawing.result, highlight=drawing.highlight)
                drawn[drawing.event_id] = (
                    snapshots.save(self.state_dir, frame.camera_id, drawing.key, jpeg)
                    if jpeg is not None
                    else None
                )
            except Exception as exc:  # noqa: BLE001 - a full disk, a hostile image: sent without it
                log.warning("snapshot not saved", event_id=drawing.key, error=str(exc))
                drawn[drawing.event_id] = None
        if self.live is not None:
            for drawing in self._drawings:
                path = drawn[drawing.event_id]
                self.live.snapshot_drawn(drawing.result.frame.camera_id, drawing.key, path)
        self._drawings.clear()
        with store.transaction(self.connection) as connection:
            store.release_deliveries(connection, drawn)

    def _ask_kafka(self) -> object:
        return self.consumer.list_topics(self.config.kafka.results_topic, timeout=0.5)

    # -- status ----------------------------------------------------------------
    def readiness(self) -> Readiness:
        """Ready: Kafka reachable and partitions of the results topic assigned."""
        kafka = self._kafka_errors.unreachable
        return Readiness.first_failing(
            Readiness(not kafka, f"Kafka unreachable: {kafka}"), self.assignment.readiness()
        )

    def status(self) -> str:
        metrics = self.metrics
        text = (
            f"{counted(metrics.results):.0f} results "
            f"({counted(metrics.duplicates, reason='replayed'):.0f} replayed and "
            f"{counted(metrics.duplicates, reason='duplicate'):.0f} duplicates skipped, "
            f"{counted(metrics.bad):.0f} rejected), {counted(metrics.events):.0f} alerts, "
            f"{counted(metrics.clips, outcome='made'):.0f} clips"
        )
        pending = store.pending_counts(self.connection) if self.connection is not None else {}
        if pending:
            text += "; pending " + ", ".join(f"{sink} {n}" for sink, n in sorted(pending.items()))
        failing = [w for w in self.workers if w.failing_since is not None]
        if failing:
            text += "; failing " + ", ".join(f"{w.sink.name} ({w.last_error})" for w in failing)
        waiting = self.assignment.waiting_for()
        return f"{waiting}; {text}" if waiting else text


def main(config: VspdConfig, _args: argparse.Namespace) -> int:
    registry = CollectorRegistry()
    stop = StopFlag().install()
    daemon = AlertsDaemon(config, registry)
    return serve(daemon, stop, config, registry, config.metrics.alerts_port)
