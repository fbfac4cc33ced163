"""Periodic reports, rendered on their own thread with their own store connection.

The main loop only consumes results; rendering (a chart, a thumbnail per
alert) would stall it. Each period is rendered when what it shows has changed
since it was last written (`store.period_fingerprint`): the current periods
every minute while results arrive, a closed one once (again only if late
results for it arrive), and all of them a last time when the daemon stops.
"""

from __future__ import annotations

import contextvars
import sqlite3
import threading
from datetime import datetime
from pathlib import Path

import structlog

from vspd.alerts import reports, store
from vspd.config.model import AlertsConfig

log = structlog.get_logger(__name__)

REPORT_INTERVAL_S = 60.0


class ReportWorker:
    def __init__(self, database: Path, settings: AlertsConfig) -> None:
        self._database = database
        self._settings = settings
        self._reports_dir = Path(settings.reports_dir)
        self._state_dir = Path(settings.state_dir)
        self._stopping = threading.Event()
        self._wake = threading.Event()
        self._written: dict[str, tuple[int, ...]] = {}  # period slug -> fingerprint written
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        context = contextvars.copy_context()
        self._thread = threading.Thread(
            target=context.run, args=(self._run,), name="reports", daemon=True
        )
        self._thread.start()

    def stop(self, timeout_s: float = 30.0) -> None:
        """Render what changed one last time, then end."""
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            self._thread = None

    def _run(self) -> None:
        connection = store.connect(self._database)
        try:
            while True:
                self.render_changed(connection, datetime.now().astimezone())
                if self._stopping.is_set():
                    return
                self._wake.wait(REPORT_INTERVAL_S)
                self._wake.clear()
        except Exception:
            log.exception("report worker failed; reports are no longer written")
        finally:
            connection.close()

    def render_changed(self, connection: sqlite3.Connection, now: datetime) -> int:
        """Write the current and previous period of each kind if changed; returns how many."""
        wanted: dict[str, reports.Period] = {}
        for name in self._settings.report_periods:
            current = reports.period_containing(name, now)
            previous = reports.period_containing(name, now - reports.PERIODS[name])
            for period in (previous, current):
                wanted[period.slug] = period
        written = 0
        for slug, period in wanted.items():
            fingerprint = store.period_fingerprint(connection, period.since_ns, period.until_ns)
            if self._written.get(slug) == fingerprint:
                continue
            try:
                reports.write_period(connection, period, self._reports_dir, self._state_dir)
            except OSError as exc:
                log.error(  # noqa: TRY400 - the reason is enough
                    "cannot write reports", directory=str(self._reports_dir), error=str(exc)
                )
                return written
            self._written[slug] = fingerprint
            written += 1
        # Periods older than the previous ones are never rendered again: forget them.
        self._written = {slug: f for slug, f in self._written.items() if slug in wanted}
        return written
