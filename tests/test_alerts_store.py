"""The alerts store alone: its schema's migrations and its records, on a real SQLite file."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from vspd.alerts import store


def _database_before_migrations(path: Path) -> None:
    """As vspd 0.1.0 left it: the first schema, user_version 0, and some history in it."""
    connection = sqlite3.connect(path)
    connection.executescript(store.MIGRATION_1)
    connection.execute(
        "INSERT INTO events (rule, camera, session, seq, time_ns, label, confidence, count, "
        "severity, message, snapshot, detections) "
        "VALUES ('door', 'gate', 's1', 7, 1000, 'person', 0.9, 1, 'info', 'someone', NULL, '[]')"
    )
    connection.execute("INSERT INTO deliveries (event_id, sink) VALUES (1, 'ops')")
    connection.execute(
        "INSERT INTO deliveries (event_id, sink, state) VALUES (1, 'home', 'delivered')"
    )
    connection.execute(
        "INSERT INTO rule_state (rule, camera, matches, last_alert_ns) VALUES ('door', 'gate', '[900, 1000]', 1000)"
    )
    connection.execute("INSERT INTO seen (camera, session, last_seq) VALUES ('gate', 's1', 7)")
    connection.commit()
    assert connection.execute("PRAGMA user_version").fetchone()[0] == 0
    connection.close()


def test_an_old_database_is_upgraded_and_keeps_its_history(tmp_path: Path) -> None:
    path = store.database_path(tmp_path)
    _database_before_migrations(path)
    connection = store.connect(path)
    try:
        assert connection.execute("PRAGMA user_version").fetchone()[0] == len(store.MIGRATIONS)
        # The new table is there and empty; nothing old was lost.
        assert store.consumed_offsets(connection) == {}
        assert store.rule_states(connection) == {
            ("door", "gate"): store.RuleStateRecord([900, 1000], 1000)
        }
        assert store.last_seq(connection, "gate", "s1") == 7
        [due] = store.claim_due(connection, "ops")
        assert (due.event.key, due.attempts, due.kind) == ("door/gate/s1/7", 0, store.ALERT)
        assert store.claim_due(connection, "home") == []  # delivered stays delivered
        assert store.pending_counts(connection) == {"ops": 1}
    finally:
        connection.close()
    # Migrating again is a no-op.
    again = store.connect(path)
    try:
        assert store.migrate(again) == len(store.MIGRATIONS)
        assert len(store.events_between(again, "gate", 0, 2000)) == 1
    finally:
        again.close()


def test_an_event_is_stored_once_with_one_delivery_per_sink(tmp_path: Path) -> None:
    connection = store.connect(store.database_path(tmp_path))
    event = store.NewEvent(
        rule="door", camera="gate", session="s1", seq=3, time_ns=5_000_000_000, label="person",
        confidence=0.8, count=1, severity="info", message="m", snapshot=None, detections=[],
    )  # fmt: skip
    try:
        with store.transaction(connection):
            first = store.insert_event(connection, event, ["ops", "home"])
            second = store.insert_event(connection, event, ["ops", "home"])
        assert first is not None
        assert second is None  # the same (rule, camera, session, seq): no second event
        assert [d.sink for d in store.deliveries_of(connection, first)] == ["home", "ops"]
        assert store.event_count(store.database_path(tmp_path)) == 1
    finally:
        connection.close()


def test_an_isolated_change_that_fails_is_undone_alone(tmp_path: Path) -> None:
    connection = store.connect(store.database_path(tmp_path))
    try:
        with store.transaction(connection):
            store.save_last_seq(connection, "gate", "s1", 1)
            try:
                with store.isolated(connection):
                    store.save_last_seq(connection, "gate", "s1", 2)
                    raise ValueError("a bad result")
            except ValueError:
                pass
        assert store.last_seq(connection, "gate", "s1") == 1
    finally:
        connection.close()


def test_reports_are_rendered_only_when_what_they_show_changed(tmp_path: Path) -> None:
    from datetime import datetime, timedelta

    from vspd.alerts.report_worker import ReportWorker
    from vspd.config.model import AlertsConfig

    settings = AlertsConfig(
        state_dir=str(tmp_path / "state"),
        reports_dir=str(tmp_path / "reports"),
        report_periods=["hourly"],
    )
    database = store.database_path(tmp_path / "state")
    connection = store.connect(database)
    worker = ReportWorker(database, settings)
    # Mid-hour, so that one second later is still the same hour.
    now = datetime.now().astimezone().replace(minute=30, second=0, microsecond=0)
    bucket = int(now.timestamp() * 1e9) // store.BUCKET_NS
    outcome = store.FrameOutcome("gate", bucket, True, False, False, 0, 3.0)
    try:
        with store.transaction(connection):
            store.add_frame(connection, outcome)
        # The previous and the current hour, once each.
        assert worker.render_changed(connection, now) == 2
        assert list((tmp_path / "reports" / "gate").glob("*.html"))
        # Nothing new: nothing rendered, however often it is asked.
        assert worker.render_changed(connection, now) == 0
        assert worker.render_changed(connection, now + timedelta(seconds=1)) == 0
        # A new result in the current hour: that hour only.
        with store.transaction(connection):
            store.add_frame(connection, outcome)
        assert worker.render_changed(connection, now) == 1
    finally:
        connection.close()
