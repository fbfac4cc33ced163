"""Delivering events: one worker thread per sink, so that a failing sink blocks no other.

A worker takes its sink's due deliveries from the store, oldest first, and
records each outcome: delivered, retried later with capped backoff, or given
up (permanent failure, `max_attempts` reached, or too many pending).
"""

from __future__ import annotations

import contextvars
import sqlite3
import threading
import time
from pathlib import Path

import structlog
from prometheus_client import Counter, Gauge

from vspd.alerts import store
from vspd.alerts.errors import DeliveryError
from vspd.alerts.sinks import Sink
from vspd.config.model import AlertsConfig, SinkConfig
from vspd.runtime.retry import backoff_delay

log = structlog.get_logger(__name__)

_IDLE_WAIT_S = 5.0
SNAPSHOT_MAX_BYTES = 16 * 1024 * 1024
CLIP_MAX_BYTES = 64 * 1024 * 1024  # sinks attach less (ntfy 15 MB, mail 10 MB) or link it


class DeliveryWorker:
    def __init__(
        self,
        sink: Sink,
        config: SinkConfig,
        alerts: AlertsConfig,
        database: Path,
        delivered: Counter,
        failed: Counter,
        pending: Gauge,
    ) -> None:
        self.sink = sink
        self.config = config
        self.alerts = alerts
        self.database = database
        self.wake = threading.Event()
        self.stopping = threading.Event()
        self.delivered = 0
        self.failing_since: float | None = None
        self.last_error = ""
        self._delivered_metric = delivered.labels(sink.name)
        self._failed_metric = failed
        self._pending_metric = pending.labels(sink.name)
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        context = contextvars.copy_context()
        self._thread = threading.Thread(
            target=context.run, args=(self._run,), name=f"sink-{self.sink.name}", daemon=True
        )
        self._thread.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        self.stopping.set()
        self.wake.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
        self.sink.close()

    def _run(self) -> None:
        connection = store.connect(self.database)
        try:
            while not self.stopping.is_set():
                worked = self._deliver_due(connection)
                if worked:
                    continue
                due = store.next_due_ns(connection, self.sink.name)
                wait = _IDLE_WAIT_S if due is None else max(0.0, (due - store.now_ns()) / 1e9)
                self.wake.wait(min(wait, _IDLE_WAIT_S))
                self.wake.clear()
        finally:
            connection.close()

    def _deliver_due(self, connection: sqlite3.Connection) -> bool:
        claimed = store.claim_due(connection, self.sink.name)
        for due in claimed:
            if self.stopping.is_set():
                return False
            event = due.event
            try:
                if due.kind == store.CLIP:
                    self._deliver_clip(connection, event)
                else:
                    self.sink.deliver(event, self._file(event.snapshot, SNAPSHOT_MAX_BYTES))
            except DeliveryError as exc:
                self._failed(connection, due, exc)
            except Exception as exc:
                log.exception("sink raised", sink=self.sink.name, event_id=event.key)
                self._failed(connection, due, DeliveryError(repr(exc)))
            else:
                store.mark_delivered(connection, event.id, self.sink.name, due.kind)
                self.delivered += 1
                self._delivered_metric.inc()
                if self.failing_since is not None:
                    log.info("sink recovered", sink=self.sink.name)
                self.failing_since = None
                self.last_error = ""
        self._pending_metric.set(store.pending_counts(connection).get(self.sink.name, 0))
        return bool(claimed)

    def _deliver_clip(self, connection: sqlite3.Connection, event: store.EventRecord) -> None:
        clip = store.clip_of(connection, event.id)
        if clip is None:
            raise DeliveryError("the clip is not in the store", retriable=False)
        self.sink.deliver_clip(event, clip, self._file(clip.path, CLIP_MAX_BYTES))

    def _failed(self, connection: sqlite3.Connection, due: store.Due, error: DeliveryError) -> None:
        attempts = due.attempts + 1
        limit = self.config.max_attempts
        final = not error.retriable or (limit and attempts >= limit)
        retry_at = None
        if not final:
            delay = retry_delay_s(self.alerts, attempts, error)
            retry_at = store.now_ns() + int(delay * 1e9)
        store.mark_failed(connection, due.event.id, self.sink.name, str(error), retry_at, due.kind)
        self._failed_metric.labels(self.sink.name, "given_up" if final else "retry").inc()
        if self.failing_since is None:
            self.failing_since = time.monotonic()
        self.last_error = str(error)
        log.warning(
            "delivery failed",
            sink=self.sink.name,
            event_id=due.event.key,  # the id every log line, header and payload uses
            delivery=due.kind,
            attempts=attempts,
            error=str(error),
            given_up=bool(final),
        )

    def _file(self, relative: str | None, limit: int) -> bytes | None:
        """A snapshot or clip under state_dir; None if gone, or too big to send along."""
        if not relative:
            return None
        try:
            path = Path(self.alerts.state_dir) / relative
            if path.stat().st_size > limit:
                return None
            return path.read_bytes()
        except OSError:
            return None


def retry_delay_s(alerts: AlertsConfig, attempts: int, error: DeliveryError) -> float:
    """Our backoff, or longer if the receiver asked (Retry-After), never past retry_max_s."""
    delay = backoff_delay(alerts.retry_initial_s, alerts.retry_max_s, attempts)
    if error.retry_after_s is not None:
        delay = max(delay, min(error.retry_after_s, alerts.retry_max_s))
    return delay
