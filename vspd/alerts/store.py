"""The alerts store: SQLite in WAL mode under the state directory.

One transaction per batch of results holds everything they change: the next
offset per results partition (so results replayed after a crash are
recognised and skipped), the last seq per (camera, session) (duplicates
written upstream, and gaps), report aggregates, rule state (debounce, cooldown), new events with
their pending deliveries. Kafka offsets are committed only after it. Each
delivery is marked when the sink accepted it, so nothing is sent twice after a
crash and nothing pending is forgotten.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Report aggregates are kept per camera and 5-second bucket of capture time:
# fine enough for a one-minute demo's timeline, small enough for a year.
BUCKET_NS = 5 * 1_000_000_000

# Numbered migrations, run in order at start; PRAGMA user_version says how far
# a database is. Never edit one that has shipped: add the next.
MIGRATION_1 = """
CREATE TABLE IF NOT EXISTS seen (
    camera TEXT NOT NULL, session TEXT NOT NULL, last_seq INTEGER NOT NULL,
    PRIMARY KEY (camera, session)
);
CREATE TABLE IF NOT EXISTS frame_stats (
    camera TEXT NOT NULL, bucket INTEGER NOT NULL,
    results INTEGER NOT NULL DEFAULT 0, ok INTEGER NOT NULL DEFAULT 0,
    failed INTEGER NOT NULL DEFAULT 0, skipped INTEGER NOT NULL DEFAULT 0,
    gaps INTEGER NOT NULL DEFAULT 0, latency_sum_ms REAL NOT NULL DEFAULT 0,
    latency_max_ms REAL NOT NULL DEFAULT 0,
    PRIMARY KEY (camera, bucket)
);
CREATE TABLE IF NOT EXISTS detection_stats (
    camera TEXT NOT NULL, bucket INTEGER NOT NULL, label TEXT NOT NULL,
    detections INTEGER NOT NULL DEFAULT 0, frames INTEGER NOT NULL DEFAULT 0,
    max_confidence REAL NOT NULL DEFAULT 0,
    PRIMARY KEY (camera, bucket, label)
);
CREATE TABLE IF NOT EXISTS rule_state (
    rule TEXT NOT NULL, camera TEXT NOT NULL,
    matches TEXT NOT NULL DEFAULT '[]', last_alert_ns INTEGER,
    PRIMARY KEY (rule, camera)
);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY,
    rule TEXT NOT NULL, camera TEXT NOT NULL, session TEXT NOT NULL, seq INTEGER NOT NULL,
    time_ns INTEGER NOT NULL, label TEXT NOT NULL, confidence REAL NOT NULL,
    count INTEGER NOT NULL, severity TEXT NOT NULL, message TEXT NOT NULL,
    snapshot TEXT, detections TEXT NOT NULL,
    UNIQUE (rule, camera, session, seq)
);
CREATE TABLE IF NOT EXISTS deliveries (
    event_id INTEGER NOT NULL REFERENCES events(id), sink TEXT NOT NULL,
    state TEXT NOT NULL DEFAULT 'pending', attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_ns INTEGER NOT NULL DEFAULT 0, last_error TEXT, done_ns INTEGER,
    PRIMARY KEY (event_id, sink)
);
CREATE INDEX IF NOT EXISTS deliveries_due ON deliveries (sink, state, next_attempt_ns);
CREATE INDEX IF NOT EXISTS events_time ON events (time_ns);
"""
# Replays are recognised by their Kafka position, not by a seq a message claims
# (a forged seq far ahead would otherwise make every genuine result a "replay").
MIGRATION_2 = """
CREATE TABLE IF NOT EXISTS consumed (
    topic TEXT NOT NULL, partition INTEGER NOT NULL, next_offset INTEGER NOT NULL,
    PRIMARY KEY (topic, partition)
);
"""
# Rules over objects: an event may be about one track (several per frame), so
# the track is part of an event's identity (-1: a rule over frames); and each
# (rule, camera, track)'s state survives restarts.
MIGRATION_3 = """
CREATE TABLE events_new (
    id INTEGER PRIMARY KEY,
    rule TEXT NOT NULL, camera TEXT NOT NULL, session TEXT NOT NULL, seq INTEGER NOT NULL,
    time_ns INTEGER NOT NULL, label TEXT NOT NULL, confidence REAL NOT NULL,
    count INTEGER NOT NULL, severity TEXT NOT NULL, message TEXT NOT NULL,
    snapshot TEXT, detections TEXT NOT NULL,
    track_id INTEGER NOT NULL DEFAULT -1, dwell_s REAL, crossed_to TEXT NOT NULL DEFAULT '',
    UNIQUE (rule, camera, session, seq, track_id)
);
INSERT INTO events_new (id, rule, camera, session, seq, time_ns, label, confidence, count,
    severity, message, snapshot, detections)
    SELECT id, rule, camera, session, seq, time_ns, label, confidence, count,
    severity, message, snapshot, detections FROM events;
DROP TABLE events;
ALTER TABLE events_new RENAME TO events;
CREATE INDEX IF NOT EXISTS events_time ON events (time_ns);
CREATE TABLE IF NOT EXISTS object_state (
    rule TEXT NOT NULL, camera TEXT NOT NULL, track_id INTEGER NOT NULL,
    first_seen_ns INTEGER NOT NULL, last_seen_ns INTEGER NOT NULL, inside_since_ns INTEGER,
    last_x REAL, last_y REAL, alerted INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (rule, camera, track_id)
);
"""
# Reports count objects: when each track was first and last seen, and every
# crossing of a rule's line, by direction.
MIGRATION_4 = """
CREATE TABLE IF NOT EXISTS objects_seen (
    camera TEXT NOT NULL, track_id INTEGER NOT NULL, label TEXT NOT NULL,
    first_ns INTEGER NOT NULL, last_ns INTEGER NOT NULL,
    PRIMARY KEY (camera, track_id)
);
CREATE INDEX IF NOT EXISTS objects_seen_time ON objects_seen (camera, last_ns);
CREATE TABLE IF NOT EXISTS crossings (
    camera TEXT NOT NULL, rule TEXT NOT NULL, bucket INTEGER NOT NULL, direction TEXT NOT NULL,
    count INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (camera, rule, bucket, direction)
);
"""
# Home Assistant discovery: the config topics each MQTT sink has published
# (retained), so that those of a camera or rule gone from the configuration
# are removed (an empty retained message) at the next start.
MIGRATION_5 = """
CREATE TABLE IF NOT EXISTS discovery_topics (
    sink TEXT NOT NULL, topic TEXT NOT NULL,
    PRIMARY KEY (sink, topic)
);
"""
# Event clips: each event's clip is made from the frames topic once its
# after-window has passed (a row survives a crash in between); a delivery is of
# an alert or of its clip (the follow-up message), once each per sink.
MIGRATION_6 = """
CREATE TABLE deliveries_new (
    event_id INTEGER NOT NULL REFERENCES events(id), sink TEXT NOT NULL,
    kind TEXT NOT NULL DEFAULT 'alert',
    state TEXT NOT NULL DEFAULT 'pending', attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_ns INTEGER NOT NULL DEFAULT 0, last_error TEXT, done_ns INTEGER,
    PRIMARY KEY (event_id, sink, kind)
);
INSERT INTO deliveries_new (event_id, sink, state, attempts, next_attempt_ns, last_error, done_ns)
    SELECT event_id, sink, state, attempts, next_attempt_ns, last_error, done_ns FROM deliveries;
DROP TABLE deliveries;
ALTER TABLE deliveries_new RENAME TO deliveries;
CREATE INDEX IF NOT EXISTS deliveries_due ON deliveries (sink, state, next_attempt_ns);
CREATE TABLE IF NOT EXISTS clips (
    event_id INTEGER PRIMARY KEY REFERENCES events(id),
    source_topic TEXT NOT NULL DEFAULT '', source_partition INTEGER NOT NULL DEFAULT -1,
    start_ns INTEGER NOT NULL, end_ns INTEGER NOT NULL, due_ns INTEGER NOT NULL,
    state TEXT NOT NULL DEFAULT 'pending', attempts INTEGER NOT NULL DEFAULT 0,
    path TEXT, content_type TEXT, bytes INTEGER, frames INTEGER,
    first_ns INTEGER, last_ns INTEGER, note TEXT NOT NULL DEFAULT '', done_ns INTEGER
);
CREATE INDEX IF NOT EXISTS clips_due ON clips (state, due_ns);
"""
MIGRATIONS = (MIGRATION_1, MIGRATION_2, MIGRATION_3, MIGRATION_4, MIGRATION_5, MIGRATION_6)
ALERT, CLIP = "alert", "clip"  # what a delivery carries


@dataclass(frozen=True)
class EventRecord:
    id: int
    rule: str
    camera: str
    session: str
    seq: int
    time_ns: int
    label: str
    confidence: float
    count: int
    severity: str
    message: str
    snapshot: str | None
    detections: list[dict[str, Any]]
    track_id: int = -1  # the object a rule over objects alerted for; -1: a rule over frames
    dwell_s: float | None = None
    crossed_to: str = ""

    @property
    def key(self) -> str:
        """Stable across restarts and replays: receivers can de-duplicate by it."""
        key = f"{self.rule}/{self.camera}/{self.session}/{self.seq}"
        return f"{key}/{self.track_id}" if self.track_id >= 0 else key

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> EventRecord:
        data = dict(row)
        data["detections"] = json.loads(data["detections"])
        return cls(**data)


def connect(path: Path) -> sqlite3.Connection:
    path.parent.mkdir(parents=True, exist_ok=True)
    connection = sqlite3.connect(
        str(path), timeout=30, isolation_level=None, check_same_thread=True
    )
    connection.row_factory = sqlite3.Row
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=FULL")  # an event must survive power loss once committed
    connection.execute("PRAGMA foreign_keys=ON")
    migrate(connection)
    return connection


def migrate(connection: sqlite3.Connection) -> int:
    """Bring the database to the newest schema; returns the version it is at."""
    version = int(connection.execute("PRAGMA user_version").fetchone()[0])
    if version >= len(MIGRATIONS):
        return version
    # A migration may rebuild a table that others refer to (events): foreign keys
    # are checked after it, not in its middle. (The pragma is a no-op inside a transaction.)
    connection.execute("PRAGMA foreign_keys=OFF")
    try:
        for number, script in enumerate(MIGRATIONS, start=1):
            if number <= version:
                continue
            connection.executescript(
                f"BEGIN IMMEDIATE;\n{script}\nPRAGMA user_version = {number};\nCOMMIT;"
            )
            version = number
        broken = connection.execute("PRAGMA foreign_key_check").fetchall()
        if broken:
            raise sqlite3.IntegrityError(f"the store's references are broken: {broken[:3]}")
    finally:
        connection.execute("PRAGMA foreign_keys=ON")
    return version


def consumed_offsets(connection: sqlite3.Connection) -> dict[tuple[str, int], int]:
    rows = connection.execute("SELECT topic, partition, next_offset FROM consumed").fetchall()
    return {(str(row[0]), int(row[1])): int(row[2]) for row in rows}


def save_consumed(connection: sqlite3.Connection, offsets: dict[tuple[str, int], int]) -> None:
    connection.executemany(
        "INSERT INTO consumed (topic, partition, next_offset) VALUES (?, ?, ?) "
        "ON CONFLICT (topic, partition) DO UPDATE SET next_offset = excluded.next_offset",
        [(topic, partition, offset) for (topic, partition), offset in offsets.items()],
    )


@contextmanager
def transaction(connection: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    connection.execute("BEGIN IMMEDIATE")
    try:
        yield connection
    except BaseException:
        connection.execute("ROLLBACK")
        raise
    connection.execute("COMMIT")


def now_ns() -> int:
    return time.time_ns()


@dataclass(frozen=True)
class Due:
    """A delivery to make: of the event itself (ALERT) or of its clip (CLIP)."""

    event: EventRecord
    attempts: int
    kind: str = ALERT


def claim_due(connection: sqlite3.Connection, sink: str, limit: int = 20) -> list[Due]:
    """Pending deliveries of a sink that are due, oldest event first (its alert before its clip)."""
    rows = connection.execute(
        """SELECT e.*, d.attempts AS _attempts, d.kind AS _kind
           FROM deliveries d JOIN events e ON e.id = d.event_id
           WHERE d.sink = ? AND d.state = 'pending' AND d.next_attempt_ns <= ?
           ORDER BY e.id, d.kind = 'clip' LIMIT ?""",
        (sink, now_ns(), limit),
    ).fetchall()
    claimed = []
    for row in rows:
        data = dict(row)
        attempts, kind = int(data.pop("_attempts")), str(data.pop("_kind"))
        data["detections"] = json.loads(data["detections"])
        claimed.append(Due(EventRecord(**data), attempts, kind))
    return claimed


def next_due_ns(connection: sqlite3.Connection, sink: str) -> int | None:
    row = connection.execute(
        "SELECT MIN(next_attempt_ns) FROM deliveries WHERE sink = ? AND state = 'pending'", (sink,)
    ).fetchone()
    return int(row[0]) if row and row[0] is not None else None


def mark_delivered(
    connection: sqlite3.Connection, event_id: int, sink: str, kind: str = ALERT
) -> None:
    connection.execute(
        "UPDATE deliveries SET state = 'delivered', done_ns = ?, attempts = attempts + 1, last_error = NULL "
        "WHERE event_id = ? AND sink = ? AND kind = ?",
        (now_ns(), event_id, sink, kind),
    )


def mark_failed(
    connection: sqlite3.Connection,
    event_id: int,
    sink: str,
    error: str,
    retry_at_ns: int | None,
    kind: str = ALERT,
) -> None:
    if retry_at_ns is None:
        connection.execute(
            "UPDATE deliveries SET state = 'given_up', done_ns = ?, attempts = attempts + 1, last_error = ? "
            "WHERE event_id = ? AND sink = ? AND kind = ?",
            (now_ns(), error, event_id, sink, kind),
        )
    else:
        connection.execute(
            "UPDATE deliveries SET attempts = attempts + 1, last_error = ?, next_attempt_ns = ? "
            "WHERE event_id = ? AND sink = ? AND kind = ?",
            (error, retry_at_ns, event_id, sink, kind),
        )


def pending_counts(connection: sqlite3.Connection) -> dict[str, int]:
    rows = connection.execute(
        "SELECT sink, COUNT(*) FROM deliveries WHERE state = 'pending' GROUP BY sink"
    ).fetchall()
    return {str(row[0]): int(row[1]) for row in rows}


def give_up_beyond(connection: sqlite3.Connection, sink: str, keep: int) -> int:
    """Keep at most `keep` pending deliveries for a sink; the oldest beyond it are given up."""
    cursor = connection.execute(
        """UPDATE deliveries SET state = 'given_up', done_ns = ?, last_error = 'too many pending deliveries'
           WHERE sink = ? AND state = 'pending' AND event_id IN (
               SELECT event_id FROM deliveries WHERE sink = ? AND state = 'pending'
               ORDER BY event_id DESC LIMIT -1 OFFSET ?)""",
        (now_ns(), sink, sink, keep),
    )
    return int(cursor.rowcount)


# -- where the store lives --------------------------------------------------
DATABASE_NAME = "alerts.sqlite"


def database_path(state_dir: Path) -> Path:
    return state_dir / DATABASE_NAME


def event_count(path: Path) -> int:
    """Events in the store at `path`, 0 if there is none (read without migrating it)."""
    if not path.exists():
        return 0
    connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return int(connection.execute("SELECT COUNT(*) FROM events").fetchone()[0])
    except sqlite3.Error:
        return 0
    finally:
        connection.close()


# -- one result's changes -----------------------------------------------------
@contextmanager
def isolated(connection: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """A savepoint: on any error what was changed inside is undone alone, and the error raised."""
    connection.execute("SAVEPOINT result")
    try:
        yield connection
    except BaseException:
        connection.execute("ROLLBACK TO result")
        connection.execute("RELEASE result")
        raise
    connection.execute("RELEASE result")


def last_seq(connection: sqlite3.Connection, camera: str, session: str) -> int | None:
    row = connection.execute(
        "SELECT last_seq FROM seen WHERE camera = ? AND session = ?", (camera, session)
    ).fetchone()
    return int(row[0]) if row is not None else None


def save_last_seq(connection: sqlite3.Connection, camera: str, session: str, seq: int) -> None:
    connection.execute(
        "INSERT INTO seen (camera, session, last_seq) VALUES (?, ?, ?) "
        "ON CONFLICT (camera, session) DO UPDATE SET last_seq = excluded.last_seq",
        (camera, session, seq),
    )


@dataclass(frozen=True)
class FrameOutcome:
    """What one result adds to its camera's 5-second bucket."""

    camera: str
    bucket: int
    ok: bool
    failed: bool
    skipped: bool
    gaps: int
    latency_ms: float


def add_frame(connection: sqlite3.Connection, outcome: FrameOutcome) -> None:
    connection.execute(
        """INSERT INTO frame_stats (camera, bucket, results, ok, failed, skipped, gaps, latency_sum_ms, latency_max_ms)
           VALUES (?, ?, 1, ?, ?, ?, ?, ?, ?)
           ON CONFLICT (camera, bucket) DO UPDATE SET
             results = results + 1, ok = ok + excluded.ok, failed = failed + excluded.failed,
             skipped = skipped + excluded.skipped, gaps = gaps + excluded.gaps,
             latency_sum_ms = latency_sum_ms + excluded.latency_sum_ms,
             latency_max_ms = MAX(latency_max_ms, excluded.latency_max_ms)""",
        (
            outcome.camera,
            outcome.bucket,
            int(outcome.ok),
            int(outcome.failed),
            int(outcome.skipped),
            outcome.gaps,
            outcome.latency_ms,
            outcome.latency_ms,
        ),
    )


def add_detections(
    connection: sqlite3.Connection,
    camera: str,
    bucket: int,
    per_label: dict[str, tuple[int, float]],
) -> None:
    """per_label: label -> (detections in this frame, best confidence)."""
    connection.executemany(
        """INSERT INTO detection_stats (camera, bucket, label, detections, frames, max_confidence)
           VALUES (?, ?, ?, ?, 1, ?)
           ON CONFLICT (camera, bucket, label) DO UPDATE SET
             detections = detections + excluded.detections, frames = frames + 1,
             max_confidence = MAX(max_confidence, excluded.max_confidence)""",
        [(camera, bucket, label, n, best) for label, (n, best) in per_label.items()],
    )


@dataclass(frozen=True)
class NewEvent:
    rule: str
    camera: str
    session: str
    seq: int
    time_ns: int
    label: str
    confidence: float
    count: int
    severity: str
    message: str
    snapshot: str | None
    detections: list[dict[str, Any]]
    track_id: int = -1
    dwell_s: float | None = None
    crossed_to: str = ""


def insert_event(connection: sqlite3.Connection, event: NewEvent, sinks: list[str]) -> int | None:
    """The event and one pending delivery per sink; None if this event exists already."""
    cursor = connection.execute(
        """INSERT OR IGNORE INTO events
           (rule, camera, session, seq, time_ns, label, confidence, count, severity, message, snapshot,
            detections, track_id, dwell_s, crossed_to)
           VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
        (
            event.rule,
            event.camera,
            event.session,
            event.seq,
            event.time_ns,
            event.label,
            event.confidence,
            event.count,
            event.severity,
            event.message,
            event.snapshot,
            json.dumps(event.detections, allow_nan=False),
            event.track_id,
            event.dwell_s,
            event.crossed_to,
        ),
    )
    if cursor.rowcount == 0 or cursor.lastrowid is None:
        return None
    event_id = int(cursor.lastrowid)
    connection.executemany(
        "INSERT INTO deliveries (event_id, sink) VALUES (?, ?)",
        [(event_id, sink) for sink in sinks],
    )
    return event_id


@dataclass(frozen=True)
class RuleStateRecord:
    matches: list[int]  # capture times (ns) of the recent matching frames
    last_alert_ns: int | None


def rule_states(connection: sqlite3.Connection) -> dict[tuple[str, str], RuleStateRecord]:
    """(rule, camera) -> its debounce and cooldown state."""
    return {
        (str(row[0]), str(row[1])): RuleStateRecord(
            [int(t) for t in json.loads(row[2])], None if row[3] is None else int(row[3])
        )
        for row in connection.execute("SELECT rule, camera, matches, last_alert_ns FROM rule_state")
    }


def save_rule_states(
    connection: sqlite3.Connection, states: dict[tuple[str, str], RuleStateRecord]
) -> None:
    connection.executemany(
        "INSERT INTO rule_state (rule, camera, matches, last_alert_ns) VALUES (?, ?, ?, ?) "
        "ON CONFLICT (rule, camera) DO UPDATE SET matches = excluded.matches, last_alert_ns = excluded.last_alert_ns",
        [
            (rule, camera, json.dumps(state.matches), state.last_alert_ns)
            for (rule, camera), state in states.items()
        ],
    )


# -- what reports read ---------------------------------------------------------
def cameras_between(connection: sqlite3.Connection, since_ns: int, until_ns: int) -> list[str]:
    rows = connection.execute(
        "SELECT DISTINCT camera FROM frame_stats WHERE bucket >= ? AND bucket < ? "
        "UNION SELECT DISTINCT camera FROM events WHERE time_ns >= ? AND time_ns < ? ORDER BY 1",
        (since_ns // BUCKET_NS, until_ns // BUCKET_NS + 1, since_ns, until_ns),
    ).fetchall()
    return [str(row[0]) for row in rows]


@dataclass(frozen=True)
class LabelCount:
    label: str
    detections: int
    frames: int
    max_confidence: float


def label_counts(
    connection: sqlite3.Connection, camera: str, first_bucket: int, end_bucket: int
) -> list[LabelCount]:
    return [
        LabelCount(str(row[0]), int(row[1]), int(row[2]), float(row[3]))
        for row in connection.execute(
            "SELECT label, SUM(detections), SUM(frames), MAX(max_confidence) FROM detection_stats "
            "WHERE camera = ? AND bucket >= ? AND bucket < ? GROUP BY label ORDER BY 2 DESC",
            (camera, first_bucket, end_bucket),
        )
    ]


@dataclass(frozen=True)
class TimelinePoint:
    bucket: int
    label: str
    detections: int


def timeline(
    connection: sqlite3.Connection, camera: str, first_bucket: int, end_bucket: int
) -> list[TimelinePoint]:
    return [
        TimelinePoint(int(row[0]), str(row[1]), int(row[2]))
        for row in connection.execute(
            "SELECT bucket, label, detections FROM detection_stats "
            "WHERE camera = ? AND bucket >= ? AND bucket < ? ORDER BY bucket, label",
            (camera, first_bucket, end_bucket),
        )
    ]


@dataclass(frozen=True)
class FrameHealth:
    results: int
    ok: int
    failed: int
    skipped: int
    gaps: int
    latency_sum_ms: float
    latency_max_ms: float
    active_buckets: int  # from the first to the last bucket with a result


def frame_health(
    connection: sqlite3.Connection, camera: str, first_bucket: int, end_bucket: int
) -> FrameHealth:
    row = connection.execute(
        "SELECT COALESCE(SUM(results),0), COALESCE(SUM(ok),0), COALESCE(SUM(failed),0), COALESCE(SUM(skipped),0), "
        "COALESCE(SUM(gaps),0), COALESCE(SUM(latency_sum_ms),0), COALESCE(MAX(latency_max_ms),0), "
        "MIN(bucket), MAX(bucket) FROM frame_stats WHERE camera = ? AND bucket >= ? AND bucket < ?",
        (camera, first_bucket, end_bucket),
    ).fetchone()
    active = (int(row[8]) - int(row[7]) + 1) if row[7] is not None else 0
    return FrameHealth(
        int(row[0]), int(row[1]), int(row[2]), int(row[3]), int(row[4]),
        float(row[5]), float(row[6]), active,
    )  # fmt: skip


def events_between(
    connection: sqlite3.Connection, camera: str, since_ns: int, until_ns: int
) -> list[EventRecord]:
    return [
        EventRecord.from_row(row)
        for row in connection.execute(
            "SELECT * FROM events WHERE camera = ? AND time_ns >= ? AND time_ns < ? ORDER BY time_ns",
            (camera, since_ns, until_ns),
        )
    ]


@dataclass(frozen=True)
class DeliveryRecord:
    sink: str
    state: str  # pending, delivered, given_up
    attempts: int
    done_ns: int | None


def deliveries_of(connection: sqlite3.Connection, event_id: int) -> list[DeliveryRecord]:
    return [
        DeliveryRecord(str(row[0]), str(row[1]), int(row[2]), row[3])
        for row in connection.execute(
            "SELECT sink, state, attempts, done_ns FROM deliveries WHERE event_id = ? "
            "AND kind = 'alert' ORDER BY sink",
            (event_id,),
        )
    ]


def delivery_delays_ms(connection: sqlite3.Connection, since_ns: int, until_ns: int) -> list[float]:
    """Capture to delivery, per delivered alert of frames captured in [since, until], sorted."""
    rows = connection.execute(
        "SELECT d.done_ns - e.time_ns FROM deliveries d JOIN events e ON e.id = d.event_id "
        "WHERE d.state = 'delivered' AND d.kind = 'alert' AND e.time_ns BETWEEN ? AND ?",
        (since_ns, until_ns),
    ).fetchall()
    return sorted(row[0] / 1e6 for row in rows)


def period_fingerprint(
    connection: sqlite3.Connection, since_ns: int, until_ns: int
) -> tuple[int, ...]:
    """Changes whenever what a report of [since, until) shows changes: results, alerts, deliveries."""
    frames = connection.execute(
        "SELECT COALESCE(SUM(results), 0), COUNT(*) FROM frame_stats WHERE bucket >= ? AND bucket < ?",
        (since_ns // BUCKET_NS, -(-until_ns // BUCKET_NS)),
    ).fetchone()
    events = connection.execute(
        "SELECT COUNT(DISTINCT e.id), COALESCE(MAX(e.id), 0), COALESCE(SUM(d.attempts), 0), "
        "COALESCE(SUM(d.state = 'pending'), 0) FROM events e LEFT JOIN deliveries d ON d.event_id = e.id "
        "WHERE e.time_ns >= ? AND e.time_ns < ?",
        (since_ns, until_ns),
    ).fetchone()
    objects = connection.execute(
        "SELECT COUNT(*), COALESCE(MAX(last_ns), 0) FROM objects_seen WHERE first_ns < ? AND last_ns >= ?",
        (until_ns, since_ns),
    ).fetchone()
    crossed = connection.execute(
        "SELECT COALESCE(SUM(count), 0) FROM crossings WHERE bucket >= ? AND bucket < ?",
        (since_ns // BUCKET_NS, -(-until_ns // BUCKET_NS)),
    ).fetchone()
    return (
        *(int(value) for value in frames),
        *(int(value) for value in events),
        *(int(value) for value in objects),
        int(crossed[0]),
    )


def hold_deliveries(connection: sqlite3.Connection, event_id: int, until_ns: int) -> None:
    """No attempt before `until_ns` (its snapshot is being drawn); released by release_deliveries."""
    connection.execute(
        "UPDATE deliveries SET next_attempt_ns = ? WHERE event_id = ? AND state = 'pending'",
        (until_ns, event_id),
    )


def release_deliveries(connection: sqlite3.Connection, drawn: dict[int, str | None]) -> None:
    """event id -> its snapshot (None: none could be drawn); its deliveries are due at once."""
    connection.executemany(
        "UPDATE events SET snapshot = ? WHERE id = ?",
        [(snapshot, event_id) for event_id, snapshot in drawn.items()],
    )
    connection.executemany(
        "UPDATE deliveries SET next_attempt_ns = 0 WHERE event_id = ? AND state = 'pending' AND attempts = 0",
        [(event_id,) for event_id in drawn],
    )


# -- rules over objects --------------------------------------------------------
@dataclass(frozen=True)
class ObjectRecord:
    first_seen_ns: int
    last_seen_ns: int
    inside_since_ns: int | None
    last_point: tuple[float, float] | None
    alerted: bool


def object_states(
    connection: sqlite3.Connection,
) -> dict[tuple[str, str], dict[int, ObjectRecord]]:
    """(rule, camera) -> track id -> its state."""
    found: dict[tuple[str, str], dict[int, ObjectRecord]] = {}
    for row in connection.execute(
        "SELECT rule, camera, track_id, first_seen_ns, last_seen_ns, inside_since_ns, "
        "last_x, last_y, alerted FROM object_state"
    ):
        point = None if row[6] is None or row[7] is None else (float(row[6]), float(row[7]))
        found.setdefault((str(row[0]), str(row[1])), {})[int(row[2])] = ObjectRecord(
            int(row[3]), int(row[4]), row[5], point, bool(row[8])
        )
    return found


def save_object_states(
    connection: sqlite3.Connection,
    changed: dict[tuple[str, str, int], ObjectRecord],
    forgotten: list[tuple[str, str, int]],
) -> None:
    connection.executemany(
        "INSERT INTO object_state (rule, camera, track_id, first_seen_ns, last_seen_ns, "
        "inside_since_ns, last_x, last_y, alerted) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
        "ON CONFLICT (rule, camera, track_id) DO UPDATE SET last_seen_ns = excluded.last_seen_ns, "
        "inside_since_ns = excluded.inside_since_ns, last_x = excluded.last_x, "
        "last_y = excluded.last_y, alerted = excluded.alerted",
        [
            (
                rule,
                camera,
                track_id,
                state.first_seen_ns,
                state.last_seen_ns,
                state.inside_since_ns,
                state.last_point[0] if state.last_point else None,
                state.last_point[1] if state.last_point else None,
                int(state.alerted),
            )
            for (rule, camera, track_id), state in changed.items()
        ],
    )
    connection.executemany(
        "DELETE FROM object_state WHERE rule = ? AND camera = ? AND track_id = ?", forgotten
    )


def see_objects(
    connection: sqlite3.Connection, camera: str, at_ns: int, tracks: list[tuple[int, str]]
) -> None:
    """(track id, label) of the objects in a frame at `at_ns`: first and last seen."""
    connection.executemany(
        "INSERT INTO objects_seen (camera, track_id, label, first_ns, last_ns) VALUES (?, ?, ?, ?, ?) "
        "ON CONFLICT (camera, track_id) DO UPDATE SET "
        "first_ns = MIN(first_ns, excluded.first_ns), last_ns = MAX(last_ns, excluded.last_ns)",
        [(camera, track_id, label, at_ns, at_ns) for track_id, label in tracks],
    )


def add_crossings(
    connection: sqlite3.Connection, camera: str, at_ns: int, crossed: list[tuple[str, str]]
) -> None:
    """(rule, direction) of each crossing of a rule's line in a frame at `at_ns`."""
    connection.executemany(
        "INSERT INTO crossings (camera, rule, bucket, direction, count) VALUES (?, ?, ?, ?, 1) "
        "ON CONFLICT (camera, rule, bucket, direction) DO UPDATE SET count = count + 1",
        [(camera, rule, at_ns // BUCKET_NS, direction) for rule, direction in crossed],
    )


@dataclass(frozen=True)
class ObjectCount:
    label: str
    unique: int  # distinct tracks seen in the period
    mean_seen_s: float  # how long they were in view, first to last sighting
    max_seen_s: float


def objects_between(
    connection: sqlite3.Connection, camera: str, since_ns: int, until_ns: int
) -> list[ObjectCount]:
    return [
        ObjectCount(str(row[0]), int(row[1]), float(row[2]) / 1e9, float(row[3]) / 1e9)
        for row in connection.execute(
            "SELECT label, COUNT(*), AVG(last_ns - first_ns), MAX(last_ns - first_ns) "
            "FROM objects_seen WHERE camera = ? AND first_ns < ? AND last_ns >= ? "
            "GROUP BY label ORDER BY 2 DESC, 1",
            (camera, until_ns, since_ns),
        )
    ]


@dataclass(frozen=True)
class CrossingCount:
    rule: str
    direction: str
    count: int


def crossings_between(
    connection: sqlite3.Connection, camera: str, since_ns: int, until_ns: int
) -> list[CrossingCount]:
    return [
        CrossingCount(str(row[0]), str(row[1]), int(row[2]))
        for row in connection.execute(
            "SELECT rule, direction, SUM(count) FROM crossings "
            "WHERE camera = ? AND bucket >= ? AND bucket < ? GROUP BY rule, direction ORDER BY 1, 2",
            (camera, since_ns // BUCKET_NS, -(-until_ns // BUCKET_NS)),
        )
    ]


def cameras_seen(connection: sqlite3.Connection) -> list[str]:
    """Every camera a result has come from."""
    return [row[0] for row in connection.execute("SELECT DISTINCT camera FROM seen ORDER BY 1")]


def discovery_topics(connection: sqlite3.Connection, sink: str) -> set[str]:
    rows = connection.execute("SELECT topic FROM discovery_topics WHERE sink = ?", (sink,))
    return {row[0] for row in rows}


def save_discovery_topics(connection: sqlite3.Connection, sink: str, topics: set[str]) -> None:
    with transaction(connection):
        connection.execute("DELETE FROM discovery_topics WHERE sink = ?", (sink,))
        connection.executemany(
            "INSERT INTO discovery_topics (sink, topic) VALUES (?, ?)",
            [(sink, topic) for topic in sorted(topics)],
        )


# -- event clips -----------------------------------------------------------------
@dataclass(frozen=True)
class ClipRecord:
    event_id: int
    source_topic: str  # where the alert's frame is ("" and -1: not said by the result)
    source_partition: int
    start_ns: int
    end_ns: int
    due_ns: int
    state: str  # pending, done, failed, skipped, removed
    attempts: int
    path: str | None  # relative to state_dir
    content_type: str | None
    bytes: int | None
    frames: int | None
    first_ns: int | None
    last_ns: int | None
    note: str  # what is missing from it, in plain words ("" when nothing)
    done_ns: int | None


def request_clip(
    connection: sqlite3.Connection,
    event_id: int,
    source: tuple[str, int] | None,
    start_ns: int,
    end_ns: int,
    due_ns: int,
) -> None:
    topic, partition = source or ("", -1)
    connection.execute(
        "INSERT OR IGNORE INTO clips (event_id, source_topic, source_partition, start_ns, end_ns, "
        "due_ns) VALUES (?, ?, ?, ?, ?, ?)",
        (event_id, topic, partition, start_ns, end_ns, due_ns),
    )


def due_clips(connection: sqlite3.Connection, limit: int = 4) -> list[ClipRecord]:
    rows = connection.execute(
        "SELECT * FROM clips WHERE state = 'pending' AND due_ns <= ? ORDER BY due_ns LIMIT ?",
        (now_ns(), limit),
    ).fetchall()
    return [ClipRecord(**dict(row)) for row in rows]


def next_clip_due_ns(connection: sqlite3.Connection) -> int | None:
    row = connection.execute("SELECT MIN(due_ns) FROM clips WHERE state = 'pending'").fetchone()
    return int(row[0]) if row and row[0] is not None else None


def clip_of(connection: sqlite3.Connection, event_id: int) -> ClipRecord | None:
    row = connection.execute("SELECT * FROM clips WHERE event_id = ?", (event_id,)).fetchone()
    return ClipRecord(**dict(row)) if row is not None else None


def clips_of(connection: sqlite3.Connection, event_ids: list[int]) -> dict[int, ClipRecord]:
    found = {}
    for event_id in event_ids:
        clip = clip_of(connection, event_id)
        if clip is not None:
            found[event_id] = clip
    return found


@dataclass(frozen=True)
class MadeClip:
    path: str | None
    content_type: str | None
    size: int
    frames: int
    first_ns: int | None
    last_ns: int | None
    note: str


def finish_clip(connection: sqlite3.Connection, event_id: int, made: MadeClip) -> int:
    """Record the clip and queue its follow-up on every sink that has (or will get) the alert
    (none for a clip without frames).

    One transaction: a crash before it makes the clip again, after it never twice.
    Returns how many follow-ups were queued.
    """
    with transaction(connection):
        connection.execute(
            "UPDATE clips SET state = 'done', path = ?, content_type = ?, bytes = ?, frames = ?, "
            "first_ns = ?, last_ns = ?, note = ?, done_ns = ? WHERE event_id = ?",
            (
                made.path,
                made.content_type,
                made.size,
                made.frames,
                made.first_ns,
                made.last_ns,
                made.note,
                now_ns(),
                event_id,
            ),
        )
        if made.path is None:
            return 0  # no frame to show: said in reports, nobody is woken for it
        cursor = connection.execute(
            "INSERT OR IGNORE INTO deliveries (event_id, sink, kind) SELECT event_id, sink, 'clip' "
            "FROM deliveries WHERE event_id = ? AND kind = 'alert' AND state != 'given_up'",
            (event_id,),
        )
        return int(cursor.rowcount)


def clip_failed(
    connection: sqlite3.Connection, event_id: int, error: str, retry_at_ns: int | None
) -> None:
    with transaction(connection):
        if retry_at_ns is None:
            connection.execute(
                "UPDATE clips SET state = 'failed', attempts = attempts + 1, note = ?, done_ns = ? "
                "WHERE event_id = ?",
                (error[:500], now_ns(), event_id),
            )
        else:
            connection.execute(
                "UPDATE clips SET attempts = attempts + 1, note = ?, due_ns = ? WHERE event_id = ?",
                (error[:500], retry_at_ns, event_id),
            )


def skip_clips_beyond(connection: sqlite3.Connection, keep: int) -> int:
    """At most `keep` clips wait; the oldest beyond are skipped (a flood of alerts)."""
    cursor = connection.execute(
        """UPDATE clips SET state = 'skipped', note = 'too many clips waiting', done_ns = ?
           WHERE state = 'pending' AND event_id IN (
               SELECT event_id FROM clips WHERE state = 'pending'
               ORDER BY event_id DESC LIMIT -1 OFFSET ?)""",
        (now_ns(), keep),
    )
    return int(cursor.rowcount)


def clips_removed(connection: sqlite3.Connection, paths: list[str]) -> None:
    with transaction(connection):
        connection.executemany(
            "UPDATE clips SET state = 'removed' WHERE path = ?", [(path,) for path in paths]
        )


def event_by_id(connection: sqlite3.Connection, event_id: int) -> EventRecord | None:
    row = connection.execute("SELECT * FROM events WHERE id = ?", (event_id,)).fetchone()
    return EventRecord.from_row(row) if row is not None else None
