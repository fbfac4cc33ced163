"""Event clips: the frames around an alert, read back from the frames topic.

Kafka keeps every frame, so a clip needs no recorder: once an alert's
after-window (`clip_after_s`) has passed, the worker reads the camera's frames
from `clip_before_s` before the alert's frame to `clip_after_s` after it, in
seq order, and encodes them. The result names the partition of its frame (the
broker's ``vspd-source`` header), so only that partition is read; its start is
found by time (`TopicReader.offset_for_time`, checked, binary search where a
broker answers wrongly).

What is missing is said, never faked: frames that left retention, frames lost
before Kafka (seq gaps), a camera that went silent. Each frame is shown from
its capture time to the next one's (a fixed frame rate, gaps held), so the clip
lasts as long as the span it shows.

Encoding: H.264 in MP4 where OpenCV's FFmpeg has an encoder (Debian's does),
else VP8 (or VP9) in WebM (the pip wheels: no H.264 encoder); both play in
Chromium, Firefox and phones' browsers.

The worker has its own thread, store connection and Kafka reader: consuming
never waits for a clip. Its queue is the store (a clip survives a crash
between the alert and its clip), bounded by `MAX_WAITING`.
"""

from __future__ import annotations

import contextlib
import contextvars
import itertools
import os
import sqlite3
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import structlog

from vspd import wire
from vspd.alerts import store
from vspd.alerts.metrics import AlertsMetrics
from vspd.config import VspdConfig
from vspd.images import declares_at_most
from vspd.runtime.paths import inside, safe_name
from vspd.runtime.retry import backoff_delay
from vspd.runtime.topic_reader import TopicReader
from vspd.v1 import frame_pb2

log = structlog.get_logger(__name__)

NS = 1_000_000_000
# Frames may reach Kafka a little after their capture (and brokers stamp
# messages at arrival): the clip is made this long after its end, and reading
# starts this much before its start.
DUE_GRACE_NS = 2 * NS
READ_MARGIN_MS = 5_000
MAX_WAITING = 200
CLIP_NICENESS = 10
MAX_ATTEMPTS = 5
MAX_FRAMES = 5_000
MAX_HELD_BYTES = 512 * 1024 * 1024
MAX_FPS = 30
# A frame later than this past the clip's end, of any camera: the camera's
# frames that would belong to the clip are not coming.
PAST_END_NS = 30 * NS


@dataclass(frozen=True)
class Codec:
    fourcc: str
    suffix: str
    content_type: str
    description: str


# VP8 before VP9: libvpx encodes VP8 ~8x faster here (bench.clip_bench; a clip
# is ~150 frames of background work per alert), and browsers that play WebM
# play both.
CODECS = (
    Codec("avc1", ".mp4", "video/mp4", "H.264 in MP4"),
    Codec("VP80", ".webm", "video/webm", "VP8 in WebM"),
    Codec("VP90", ".webm", "video/webm", "VP9 in WebM"),
)


def choose_codec(directory: Path) -> Codec | None:
    """The first codec of CODECS this OpenCV can really write (tried on a tiny clip)."""
    directory.mkdir(parents=True, exist_ok=True)
    for codec in CODECS:
        handle, name = tempfile.mkstemp(suffix=codec.suffix, dir=directory)
        os.close(handle)
        try:
            writer = cv2.VideoWriter(name, cv2.VideoWriter_fourcc(*codec.fourcc), 5.0, (64, 48))
            if not writer.isOpened():
                continue
            for shade in (0, 255):
                writer.write(np.full((48, 64, 3), shade, np.uint8))
            writer.release()
            if Path(name).stat().st_size > 0:
                return codec
        except cv2.error:
            continue
        finally:
            Path(name).unlink(missing_ok=True)
    return None


@dataclass
class Collected:
    frames: list[frame_pb2.Frame]
    retention_reached: bool  # the read started at the partition's first retained message
    retention_trimmed: bool  # ... and that partition has lost messages to retention


def collect(reader: TopicReader, topic: str, clip: store.ClipRecord, camera: str) -> Collected:
    """The camera's frames captured in [start, end], in capture order, one per (session, seq)."""
    partitions = reader.partitions(topic)
    if clip.source_topic == topic and clip.source_partition in partitions:
        partitions = [clip.source_partition]  # else (not said, or forged): every partition
    found: dict[tuple[str, int], frame_pb2.Frame] = {}
    reached, trimmed = False, False
    held = 0  # image bytes kept: a flood of huge frames cannot exhaust memory
    for partition in partitions:
        low, _high = reader.watermarks(topic, partition)
        start = reader.offset_for_time(
            topic, partition, clip.start_ns // 1_000_000 - READ_MARGIN_MS
        )
        if start <= low:
            reached, trimmed = True, trimmed or low > 0
        for record in reader.read(topic, partition, start):
            try:
                frame = wire.decode_frame(record.value)
            except wire.BadMessageError:
                continue  # counted where frames are consumed; a clip just skips it
            moment = frame.capture_time_unix_ns
            if moment > clip.end_ns + PAST_END_NS or len(found) >= MAX_FRAMES:
                break
            if held > MAX_HELD_BYTES:
                break  # said by describe_missing: the clip ends early
            identity = (frame.session_id, frame.seq)
            wanted = frame.camera_id == camera and clip.start_ns <= moment <= clip.end_ns
            if wanted and identity not in found:
                found[identity] = frame
                held += len(frame.image)
    frames = sorted(found.values(), key=lambda f: (f.capture_time_unix_ns, f.seq))
    return Collected(frames, reached, trimmed)


def describe_missing(clip: store.ClipRecord, collected: Collected, interval_ns: int) -> str:
    """What the clip lacks, in plain words; "" when it has all it should."""
    frames = collected.frames
    notes = []
    if not frames:
        where = "left retention" if collected.retention_trimmed else "never reached Kafka"
        return "no frame of the camera in this span: it " + where
    lead_ns = frames[0].capture_time_unix_ns - clip.start_ns
    if lead_ns > 2 * interval_ns:
        if collected.retention_trimmed:
            notes.append(f"the first {lead_ns / NS:.1f} s are no longer in Kafka (retention)")
        elif collected.retention_reached:
            notes.append(f"the first {lead_ns / NS:.1f} s are not in Kafka (nothing older)")
        else:
            notes.append(f"no frames in the first {lead_ns / NS:.1f} s")
    tail_ns = clip.end_ns - frames[-1].capture_time_unix_ns
    if tail_ns > 2 * interval_ns:
        notes.append(f"the camera sent nothing in the last {tail_ns / NS:.1f} s")
    lost = 0
    for before, after in itertools.pairwise(frames):
        if after.session_id == before.session_id and after.seq > before.seq + 1:
            lost += after.seq - before.seq - 1
    if lost:
        notes.append(f"{lost} frame{'s' if lost != 1 else ''} lost before Kafka (seq gaps)")
    return "; ".join(notes)


def frame_interval_ns(frames: list[frame_pb2.Frame]) -> int:
    """The camera's usual spacing of frames (the median), one frame at 10 fps if unknown."""
    gaps = sorted(
        b.capture_time_unix_ns - a.capture_time_unix_ns
        for a, b in itertools.pairwise(frames)
        if b.capture_time_unix_ns > a.capture_time_unix_ns
    )
    return gaps[len(gaps) // 2] if gaps else NS // 10


def _image(frame: frame_pb2.Frame) -> np.ndarray | None:
    if frame.encoding == frame_pb2.ENCODING_RAW_BGR24:
        expected = frame.width * frame.height * 3
        if len(frame.image) != expected:
            return None
        return np.frombuffer(frame.image, np.uint8).reshape(frame.height, frame.width, 3)
    if not declares_at_most(frame.image):
        return None  # a decoding bomb: left out of the clip
    image = cv2.imdecode(np.frombuffer(frame.image, np.uint8), cv2.IMREAD_COLOR)
    return image if image is not None else None


def encode(frames: list[frame_pb2.Frame], path: Path, codec: Codec, interval_ns: int) -> int:
    """Write the clip at a fixed rate, each frame held until the next one's capture time.

    Returns the number of frames written to the file (frames that do not decode are skipped).
    """
    fps = max(1.0, min(float(MAX_FPS), NS / interval_ns))
    slot_ns = NS / fps
    writer: cv2.VideoWriter | None = None
    size: tuple[int, int] | None = None
    written = 0
    start_ns = frames[0].capture_time_unix_ns
    slots_done = 0
    previous: np.ndarray | None = None
    try:
        for frame in frames:
            image = _image(frame)
            if image is None:
                continue
            if writer is None:
                size = (image.shape[1] // 2 * 2, image.shape[0] // 2 * 2)  # even sides for H.264
                writer = cv2.VideoWriter(
                    str(path), cv2.VideoWriter_fourcc(*codec.fourcc), fps, size
                )
                if not writer.isOpened():
                    raise OSError(f"cannot write {codec.description} to {path}")
            assert size is not None  # noqa: S101 - set with the writer
            if (image.shape[1], image.shape[0]) != size:
                image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
            # Hold the previous frame until this one's time, then show this one.
            until = int((frame.capture_time_unix_ns - start_ns) / slot_ns)
            while previous is not None and slots_done < until:
                writer.write(previous)
                slots_done += 1
            writer.write(image)
            slots_done += 1
            written += 1
            previous = image
        if writer is not None and previous is not None:
            writer.write(previous)  # the last frame is shown for one interval too
    finally:
        if writer is not None:
            writer.release()
    return written


class ClipWorker:
    """Makes due clips on its own thread; `on_done` is told of each (its follow-ups are queued)."""

    def __init__(
        self,
        config: VspdConfig,
        database: Path,
        on_done: Callable[[store.EventRecord, store.MadeClip], None],
        metrics: AlertsMetrics,
    ) -> None:
        self._metrics = metrics
        self._config = config
        self._settings = config.alerts
        self._database = database
        self._state_dir = Path(self._settings.state_dir)
        self._clips_dir = self._state_dir / "clips"
        self._on_done = on_done
        self._stopping = threading.Event()
        self.wake = threading.Event()
        self._thread: threading.Thread | None = None
        self.codec: Codec | None = None

    def start(self) -> None:
        self.codec = choose_codec(self._clips_dir)
        if self.codec is None:
            log.error("no clips: this OpenCV can write neither H.264 nor VP9/VP8 video")
            return
        log.info("clips", codec=self.codec.description, directory=str(self._clips_dir))
        context = contextvars.copy_context()
        self._thread = threading.Thread(
            target=context.run, args=(self._run,), name="clips", daemon=True
        )
        self._thread.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        self._stopping.set()
        self.wake.set()
        if self._thread is not None:
            self._thread.join(timeout_s)

    def _run(self) -> None:
        # Background work: below the daemons that keep up with the cameras (on Linux a
        # thread's nice value is its own, and the encoder's threads inherit it).
        with contextlib.suppress(OSError, AttributeError):
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), CLIP_NICENESS)
        connection = store.connect(self._database)
        reader = TopicReader(self._config.kafka, "vspd-clips")
        try:
            while not self._stopping.is_set():
                with store.transaction(connection):
                    skipped = store.skip_clips_beyond(connection, MAX_WAITING)
                if skipped:
                    self._metrics.clips.labels("skipped").inc(skipped)
                    log.warning("too many clips waiting; oldest skipped", skipped=skipped)
                for clip in store.due_clips(connection):
                    if self._stopping.is_set():
                        break
                    self._make(connection, reader, clip)
                due = store.next_clip_due_ns(connection)
                wait = 5.0 if due is None else max(0.05, (due - store.now_ns()) / 1e9)
                self.wake.wait(min(wait, 5.0))
                self.wake.clear()
        except Exception:
            log.exception("clip worker failed; no more clips until a restart")
        finally:
            reader.close()
            connection.close()

    def _make(
        self, connection: sqlite3.Connection, reader: TopicReader, clip: store.ClipRecord
    ) -> None:
        assert self.codec is not None  # noqa: S101 - started only with one
        event = store.event_by_id(connection, clip.event_id)
        if event is None:
            return
        started = time.monotonic()
        try:
            collected = collect(reader, self._config.kafka.frames_topic, clip, event.camera)
            interval_ns = frame_interval_ns(collected.frames)
            note = describe_missing(clip, collected, interval_ns)
            path, size, written = None, 0, 0
            if collected.frames:
                relative = (
                    Path("clips")
                    / safe_name(event.camera)
                    / (safe_name(event.key.replace("/", "_")) + self.codec.suffix)
                )
                target = inside(self._state_dir, *relative.parts)
                target.parent.mkdir(parents=True, exist_ok=True)
                partial = target.with_name(f".{target.name}.partial{self.codec.suffix}")
                written = encode(collected.frames, partial, self.codec, interval_ns)
                if written:
                    partial.replace(target)
                    path, size = str(relative), target.stat().st_size
                else:
                    partial.unlink(missing_ok=True)
                    note = note or "no frame of it could be decoded"
            first = collected.frames[0].capture_time_unix_ns if written else None
            last = collected.frames[-1].capture_time_unix_ns if written else None
            made = store.MadeClip(
                path, self.codec.content_type if path else None, size, written, first, last, note
            )
        except Exception as exc:  # noqa: BLE001 - Kafka, a full disk: tried again later
            attempts = clip.attempts + 1
            retry_at = None
            if attempts < MAX_ATTEMPTS:
                retry_at = store.now_ns() + int(backoff_delay(2.0, 60.0, attempts) * 1e9)
            store.clip_failed(connection, clip.event_id, f"{type(exc).__name__}: {exc}", retry_at)
            if retry_at is None:
                self._metrics.clips.labels("failed").inc()
            log.warning(
                "clip not made", event_id=event.key, error=str(exc)[:300], retry=bool(retry_at)
            )
            return
        queued = store.finish_clip(connection, clip.event_id, made)
        self._metrics.clips.labels("made").inc()
        log.info(
            "clip ready",
            event_id=event.key,
            clip=made.path,
            frames=made.frames,
            seconds=round(time.monotonic() - started, 2),
            missing=made.note or None,
        )
        self._enforce_cap(connection, made.path)
        del queued  # the delivery workers find them; on_done wakes them
        self._on_done(event, made)

    def _enforce_cap(self, connection: sqlite3.Connection, newest: str | None) -> None:
        """Keep the clips under clips_max_bytes: the oldest files go first (counted, said).

        The clip just made stays even alone above the cap: its follow-ups are queued.
        """
        files = sorted(
            (
                path
                for path in self._clips_dir.rglob("*")
                if path.is_file() and not path.name.startswith(".")
            ),
            key=lambda path: path.stat().st_mtime,
        )
        total = sum(path.stat().st_size for path in files)
        removed: list[str] = []
        if newest is not None:
            files = [path for path in files if path != self._state_dir / newest]
        while files and total > self._settings.clips_max_bytes:
            oldest = files.pop(0)
            total -= oldest.stat().st_size
            oldest.unlink(missing_ok=True)
            removed.append(str(oldest.relative_to(self._state_dir)))
        if removed:
            store.clips_removed(connection, removed)
            self._metrics.clips_removed.inc(len(removed))
            log.info(
                "oldest clips removed",
                removed=len(removed),
                cap_bytes=self._settings.clips_max_bytes,
            )
