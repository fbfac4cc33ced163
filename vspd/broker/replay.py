"""`vspd replay`: a period of retained frames through a processor, into another results topic.

    vspd replay --since 2026-11-30T08:00 --until 2026-11-30T20:00 --camera door \\
        --results-topic results-new-model --processor-address 127.0.0.1:50061

It is the broker itself, bounded (bounds.py): the ordered window, per-camera
order, retries and dead letters, tracking, and recovery. Where each partition
starts is found by time (TopicReader.offset_for_time, checked); where it stops
is the first message stamped well after the period's end (or the partition's
end now). The consumer group is named after the run (results topic, period,
cameras): an interrupted replay run again resumes from its commits, and what it
wrote before a crash is recognised in the results topic (recovery.py), so every
frame of the period gets exactly one result.

Exit 0 only when every frame of the period has its result; Ctrl-C stops after
what is in flight (run the same command again to finish).
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import time

import structlog
from prometheus_client import CollectorRegistry
from pydantic import TypeAdapter, ValidationError

from vspd.broker.bounds import Bounds
from vspd.broker.daemon import BrokerDaemon
from vspd.broker.errors import BrokerError
from vspd.config import VspdConfig
from vspd.config.model import BrokerConfig, TopicName
from vspd.runtime.lifecycle import StopFlag
from vspd.runtime.metrics import counted
from vspd.runtime.moments import parse_period, unix_ns
from vspd.runtime.topic_reader import TopicReader

log = structlog.get_logger(__name__)
TopicAdapter: TypeAdapter[str] = TypeAdapter(TopicName)

# Messages are stamped when they reach Kafka, after their capture: a frame of
# the period may be stamped this much after its end (a camera's backlog after
# a short outage), so the stop is looked up this much later.
STAMP_MARGIN_MS = 5 * 60 * 1000
PROGRESS_EVERY_S = 0.5


def replay_group(results_topic: str, since_ns: int, until_ns: int, cameras: list[str]) -> str:
    """The run's consumer group: the same command again resumes it."""
    spec = f"{results_topic}|{since_ns}|{until_ns}|{','.join(sorted(cameras))}"
    return f"vspd-replay-{hashlib.sha256(spec.encode()).hexdigest()[:16]}"


def plan(config: VspdConfig, since_ns: int, until_ns: int, cameras: list[str]) -> Bounds:
    topic = config.kafka.frames_topic
    start: dict[int, int] = {}
    stop: dict[int, int] = {}
    with TopicReader(config.kafka, "vspd-replay-plan") as reader:
        partitions = reader.partitions(topic)
        if not partitions:
            raise BrokerError(f"the frames topic {topic} does not exist or has no partitions")
        for partition in partitions:
            start[partition] = reader.offset_for_time(topic, partition, since_ns // 1_000_000)
            stop[partition] = reader.offset_for_time(
                topic, partition, until_ns // 1_000_000 + STAMP_MARGIN_MS
            )
    return Bounds(since_ns, until_ns, start, stop, frozenset(cameras))


def replay_config(config: VspdConfig, args: argparse.Namespace, group: str) -> VspdConfig:
    """The broker's configuration for this run; the command line's values validated as keys."""
    changes: dict[str, object] = {
        "group_id": group,
        "group_instance_id": "",
        "max_frame_age_s": 0.0,  # old frames are the point
    }
    if args.processor_address:
        changes["processor_addresses"] = [args.processor_address]
    if args.processor_api:
        changes["processor_api"] = args.processor_api
    try:
        broker = BrokerConfig.model_validate({**config.broker.model_dump(), **changes})
        TopicAdapter.validate_python(args.results_topic)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise BrokerError(f"{first['msg']}: {first.get('input')!r}") from None
    kafka = config.kafka.model_copy(update={"results_topic": args.results_topic})
    return config.model_copy(update={"broker": broker, "kafka": kafka})


class Progress:
    """One line, rewritten, at a terminal; a log line now and then elsewhere."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.started = time.monotonic()
        self._last = 0.0
        self.terminal = sys.stderr.isatty()

    def show(self, done: int, final: bool = False) -> None:
        now = time.monotonic()
        if not final and now - self._last < (PROGRESS_EVERY_S if self.terminal else 10.0):
            return
        self._last = now
        elapsed = max(1e-6, now - self.started)
        rate = done / elapsed
        left = (self.total - done) / rate if rate > 0 else float("inf")
        eta = f"ETA {_duration(left)}" if left != float("inf") else "ETA unknown"
        share = done / self.total if self.total else 1.0
        width = 30
        bar = "#" * int(share * width) + "-" * (width - int(share * width))
        text = f"replay [{bar}] {done}/{self.total} messages ({share:.0%}), {rate:.1f}/s, {eta}"
        if self.terminal:
            sys.stderr.write("\r" + text + ("\n" if final else ""))
            sys.stderr.flush()
        else:
            log.info("replay progress", done=done, total=self.total, per_s=round(rate, 1))


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds >= 3600:
        return f"{seconds // 3600}h {seconds % 3600 // 60:02d}m"
    if seconds >= 60:
        return f"{seconds // 60}m {seconds % 60:02d}s"
    return f"{seconds}s"


def run(config: VspdConfig, args: argparse.Namespace, stop: StopFlag) -> int:
    since, until = parse_period(args.since, args.until)
    since_ns, until_ns = unix_ns(since), unix_ns(until)
    if until_ns > time.time_ns():
        raise BrokerError("--until is in the future: a replay reads what Kafka holds already")
    if args.results_topic == config.kafka.results_topic:
        raise BrokerError(
            f"--results-topic {args.results_topic} is the live results topic: replay into "
            "another one (vspd topics create can make it)"
        )
    cameras = list(args.camera or [])
    group = replay_group(args.results_topic, since_ns, until_ns, cameras)
    replay = replay_config(config, args, group)  # the command line checked before Kafka is asked
    bounds = plan(config, since_ns, until_ns, cameras)
    daemon = BrokerDaemon(replay, CollectorRegistry())
    daemon.partitions.bounds = bounds
    log.info(
        "replaying",
        since=since.isoformat(),
        until=until.isoformat(),
        cameras=cameras or "all",
        results_topic=args.results_topic,
        processors=replay.broker.processor_addresses,
        group=group,
        messages=bounds.total(),
    )
    progress = Progress(bounds.total())
    daemon.start()
    finished = False
    try:
        while not stop.is_set():
            daemon.step()
            done = _done(daemon, bounds)
            progress.show(done)
            if done >= bounds.total() and _all_committed(daemon, bounds):
                finished = True
                break
    finally:
        daemon.drain()
    progress.show(_done(daemon, bounds), final=True)
    return _verdict(daemon, finished)


def _done(daemon: BrokerDaemon, bounds: Bounds) -> int:
    done = 0
    for state in daemon.partitions:
        committed = state.window.committed
        start = bounds.start.get(state.partition, 0)
        if committed is not None:
            done += max(0, min(committed, bounds.stop[state.partition]) - start)
    return done


def _all_committed(daemon: BrokerDaemon, bounds: Bounds) -> bool:
    """Every partition of the period committed up to its stop (empty ones need no owner)."""
    states = {state.partition: state for state in daemon.partitions}
    for partition, stop_at in bounds.stop.items():
        if stop_at <= bounds.start.get(partition, 0):
            continue
        state = states.get(partition)
        if state is None or state.window.committed is None or state.window.committed < stop_at:
            return False
    return True


def _verdict(daemon: BrokerDaemon, finished: bool) -> int:
    metrics = daemon.metrics
    results = sum(counted(metrics.results, status=s) for s in ("ok", "failed", "skipped"))
    failed = counted(metrics.results, status="failed")
    dead = counted(metrics.dead_letters)
    wanted, before = daemon.partitions.wanted, daemon.partitions.already_written
    summary = (
        f"{wanted} frames of the period read; {results:.0f} results written "
        f"({failed:.0f} with status failed), {before} written by an earlier run, "
        f"{dead:.0f} dead letters"
    )
    if not finished:
        print(f"vspd replay: interrupted: {summary}; run the same command again to finish")  # noqa: T201
        return 130
    if wanted + before == 0:
        print(  # noqa: T201
            "vspd replay: no frame of the period is in the frames topic (left retention? "
            "another period, or camera id?)"
        )
        return 1
    missing = wanted - int(results)
    if missing > 0:
        print(f"vspd replay: {missing} frames of the period have no result: {summary}")  # noqa: T201
        return 1
    print(f"vspd replay: done: {summary}")  # noqa: T201
    return 0


def main(config: VspdConfig, args: argparse.Namespace) -> int:
    stop = StopFlag().install()
    return run(config, args, stop)
