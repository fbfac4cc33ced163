"""The pipeline's health, read from Kafka itself: no access to the other hosts needed.

- cameras: the tail of the frames topic (the last ``sample`` frames of each
  partition): when each camera's last frame was captured, its frame rate, and
  the seq numbers missing in that tail (frames lost before Kafka);
- the broker's and the alerts daemon's consumer groups: committed offsets
  against the partitions' ends (what they have not done yet);
- dead letters written in the last hour (by message time).
"""

from __future__ import annotations

import itertools
import time
from collections import defaultdict
from dataclasses import dataclass, field

from confluent_kafka import Consumer, KafkaException, TopicPartition

from vspd import wire
from vspd.config import VspdConfig
from vspd.runtime.kafka import consumer_settings
from vspd.runtime.topic_reader import READ_TIMEOUT_S, TopicReader

FPS_WINDOW_S = 10.0
HOUR_MS = 3_600_000


@dataclass(frozen=True)
class CameraHealth:
    camera: str
    last_frame_age_s: float | None  # None: no frame of it in the sampled tail
    fps: float
    gaps: int  # seq numbers missing in the sampled tail
    sampled: int

    def stale(self, after_s: float) -> bool:
        return self.last_frame_age_s is None or self.last_frame_age_s > after_s


@dataclass(frozen=True)
class GroupLag:
    group: str
    topic: str
    lag: int | None  # None: the group has committed nothing on this topic


@dataclass
class PipelineHealth:
    cameras: list[CameraHealth] = field(default_factory=list)
    broker: GroupLag | None = None
    alerts: GroupLag | None = None
    dead_letters_last_hour: int = 0
    undecodable_frames: int = 0


def gather(
    config: VspdConfig, sample: int = 64, now_ns: int | None = None, cameras: bool = True
) -> PipelineHealth:
    """Everything above; `cameras=False` skips reading the frames topic (lag and dead letters)."""
    kafka = config.kafka
    now_ns = time.time_ns() if now_ns is None else now_ns
    health = PipelineHealth()
    with TopicReader(kafka, "vspd-status") as reader:
        if cameras:
            health.cameras, health.undecodable_frames = _cameras(reader, config, sample, now_ns)
        health.dead_letters_last_hour = sum(
            high - reader.offset_for_time(kafka.dead_letter_topic, p, now_ns // 1_000_000 - HOUR_MS)
            for p in reader.partitions(kafka.dead_letter_topic)
            for _low, high in [reader.watermarks(kafka.dead_letter_topic, p)]
        )
        health.broker = _lag(config, reader, config.broker.group_id, kafka.frames_topic)
        health.alerts = _lag(config, reader, config.alerts.group_id, kafka.results_topic)
    return health


def _cameras(
    reader: TopicReader, config: VspdConfig, sample: int, now_ns: int
) -> tuple[list[CameraHealth], int]:
    topic = config.kafka.frames_topic
    seen: dict[str, list[tuple[str, int, int]]] = defaultdict(list)  # (session, seq, capture ns)
    bad = 0
    for partition in reader.partitions(topic):
        low, high = reader.watermarks(topic, partition)
        for record in reader.read(topic, partition, max(low, high - sample)):
            try:
                frame = wire.decode_frame(record.value)
            except wire.BadMessageError:
                bad += 1
                continue
            seen[frame.camera_id].append((frame.session_id, frame.seq, frame.capture_time_unix_ns))
    cameras = [_camera(camera, frames, now_ns) for camera, frames in sorted(seen.items())]
    # Configured cameras never seen in the tail are the first thing to show.
    cameras.extend(
        CameraHealth(configured.id, None, 0.0, 0, 0)
        for configured in config.cameras
        if configured.id not in seen
    )
    return cameras, bad


def _camera(camera: str, frames: list[tuple[str, int, int]], now_ns: int) -> CameraHealth:
    frames.sort(key=lambda f: f[2])
    last_ns = frames[-1][2]
    recent = [t for _s, _q, t in frames if t >= last_ns - FPS_WINDOW_S * 1e9]
    span_s = (recent[-1] - recent[0]) / 1e9
    fps = (len(recent) - 1) / span_s if len(recent) > 1 and span_s > 0 else 0.0
    gaps = 0
    by_session: dict[str, list[int]] = defaultdict(list)
    for session, seq, _t in frames:
        by_session[session].append(seq)
    for seqs in by_session.values():
        ordered = sorted(set(seqs))
        gaps += sum(b - a - 1 for a, b in itertools.pairwise(ordered))
    return CameraHealth(camera, max(0.0, (now_ns - last_ns) / 1e9), fps, gaps, len(frames))


def _lag(config: VspdConfig, reader: TopicReader, group: str, topic: str) -> GroupLag:
    """What the group has not done yet: partition ends minus its committed offsets."""
    partitions = reader.partitions(topic)
    # A consumer with the group's id that never subscribes: it reads the group's
    # committed offsets (OffsetFetch) without joining the group or disturbing it.
    looker = Consumer(
        consumer_settings(config.kafka, "vspd-status-lag", group, **{"enable.auto.commit": False})
    )
    try:
        committed = looker.committed(
            [TopicPartition(topic, p) for p in partitions], timeout=READ_TIMEOUT_S
        )
    except KafkaException:
        return GroupLag(group, topic, None)
    finally:
        looker.close()
    lag, any_commit = 0, False
    for tp in committed:
        low, high = reader.watermarks(topic, tp.partition)  # the end as fetched: exact
        if tp.offset >= 0:
            any_commit = True
            lag += max(0, high - tp.offset)
        else:
            lag += max(0, high - low)
    return GroupLag(group, topic, lag if any_commit else None)
