"""The `vspd` command: one entry point, a thin main() per subcommand.

A user mistake is one clear line on stderr and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Callable, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

from vspd import __version__
from vspd.config import DEFAULT_CONFIG_PATH, ConfigError, VspdConfig, load_config
from vspd.config.secrets import DAEMON_SCOPES
from vspd.errors import VspdError
from vspd.runtime.logging import configure_logging
from vspd.runtime.memory import limit_malloc_arenas

EXIT_OK = 0
EXIT_FAILURE = 1

Command = Callable[[VspdConfig, argparse.Namespace], int]


def _add_common_options(parser: argparse.ArgumentParser, *, top: bool) -> None:
    """--config and --log-level, accepted before or after the subcommand.

    A subcommand's copy leaves the value alone when it is not given there
    (SUPPRESS), so `vspd --config F broker` and `vspd broker --config F` agree.
    """
    default = None if top else argparse.SUPPRESS
    parser.add_argument(
        "--config",
        type=Path,
        default=default,
        metavar="FILE",
        help=f"configuration file (default {DEFAULT_CONFIG_PATH})",
    )
    parser.add_argument(
        "--log-level",
        choices=["debug", "info", "warning", "error"],
        default=default,
        help="overrides [logging] level",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vspd", description="Real-time video analytics for camera fleets over Kafka."
    )
    parser.add_argument("--version", action="version", version=f"vspd {__version__}")
    _add_common_options(parser, top=True)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(
        parent: Any, name: str, summary: str, description: str = ""
    ) -> argparse.ArgumentParser:
        sub: argparse.ArgumentParser = parent.add_parser(
            name, help=summary, description=description or summary
        )
        _add_common_options(sub, top=False)
        return sub

    capture = command(
        commands,
        "capture",
        "run one camera: frames into Kafka",
        "Read one camera ([[cameras]] entry) and send its frames to the frames topic.",
    )
    capture.add_argument("--camera", required=True, help="the id of a [[cameras]] entry")
    command(
        commands,
        "broker",
        "run the processing broker",
        "Frames from Kafka through the processor, results back in capture order per camera.",
    )
    processor = command(
        commands,
        "processor",
        "run the gRPC processor server",
        "Serve the configured plug-in over gRPC; with --try, run it once on an image instead.",
    )
    processor.add_argument(
        "--try",
        dest="try_image",
        type=Path,
        metavar="IMAGE",
        help="run the configured processor once on this image file, print the detections "
        "and write IMAGE.boxes.jpg with the boxes drawn",
    )
    command(
        commands,
        "alerts",
        "run the alerts and reports daemon",
        "Rules over results: notifications to the sinks, the event store and HTML reports.",
    )

    demo = command(
        commands,
        "demo",
        "run the whole pipeline on this machine",
        "Capture, processor, broker and alerts on this machine, on an embedded Kafka broker "
        "unless --bootstrap-servers is given; ends with a verdict and a report. "
        "It uses its own configuration, never /etc/vspd/vspd.toml.",
    )
    demo.add_argument("--cameras", type=int, default=2, help="synthetic cameras (default 2)")
    demo.add_argument(
        "--source", action="append", default=[], help="a camera source URI instead (repeatable)"
    )
    demo.add_argument("--duration", type=float, default=60.0, help="seconds to run (default 60)")
    demo.add_argument(
        "--bootstrap-servers",
        help="use this Kafka cluster, not an embedded broker (its demo topics are deleted at the end)",
    )
    demo.add_argument(
        "--report-dir",
        type=Path,
        default=Path("vspd-demo-report"),
        help="where the demo's HTML report goes (default ./vspd-demo-report)",
    )

    report = command(
        commands,
        "report",
        "render a report of any period from the store",
        "Render the HTML report of a period from the alerts daemon's event store.",
    )
    report.add_argument("--since", required=True, help="ISO time or date")
    report.add_argument("--until", required=True, help="ISO time or date")
    report.add_argument("--out", type=Path, required=True, help="directory to write into")

    status = command(
        commands,
        "status",
        "the pipeline's health from Kafka alone; exit 1 if stale or lagging",
        "Cameras seen (last frame age, fps, seq gaps), the broker's and the alerts daemon's "
        "lag, dead letters of the last hour; exit 1 when a camera is stale or a group lags "
        "beyond the thresholds (for cron or a monitoring check).",
    )
    status.add_argument(
        "--stale-after",
        type=float,
        default=30.0,
        metavar="S",
        help="a camera whose last frame is older than this is stale (default 30)",
    )
    status.add_argument(
        "--max-lag",
        type=int,
        default=1000,
        metavar="N",
        help="a group more than N messages behind is lagging (default 1000)",
    )
    status.add_argument(
        "--sample",
        type=int,
        default=64,
        metavar="N",
        help="frames read from the end of each frames partition (default 64)",
    )

    replay = command(
        commands,
        "replay",
        "run retained frames of a period through a processor into another results topic",
        "Run the frames Kafka still holds for a period through a processor, with the broker's "
        "machinery (per-camera order, retries, dead letters, tracking), into another results "
        "topic; exit 0 only when every frame of the period has its result. Interrupted, the "
        "same command again continues where it stopped.",
    )
    replay.add_argument("--since", required=True, help="ISO time or date: the period's start")
    replay.add_argument("--until", required=True, help="ISO time or date: the period's end")
    replay.add_argument(
        "--camera", action="append", metavar="ID", help="only this camera (repeatable)"
    )
    replay.add_argument(
        "--results-topic", required=True, metavar="TOPIC", help="where the results go"
    )
    replay.add_argument(
        "--processor-address",
        metavar="HOST:PORT",
        help="the processor to use (default: [broker] processor_addresses)",
    )
    replay.add_argument(
        "--processor-api",
        choices=["vspd", "detector"],
        help="its API (default: [broker] processor_api)",
    )

    check = command(
        commands,
        "check-config",
        "validate the configuration; exit 1 if invalid",
        "Validate a configuration file: every problem at once, exit 1 if there is any.",
    )
    check.add_argument(
        "file", nargs="?", type=Path, default=None, help="the file (same as --config)"
    )

    config = command(commands, "config", "configuration helpers")
    config_actions = config.add_subparsers(dest="action", required=True, metavar="ACTION")
    config_actions.add_parser(
        "example",
        help="print a complete, commented configuration",
        description="Print a complete configuration, every key with its default and meaning.",
    )

    topics = command(commands, "topics", "Kafka topic helpers")
    topics_actions = topics.add_subparsers(dest="action", required=True, metavar="ACTION")
    create = command(
        topics_actions,
        "create",
        "create the configured topics, or bring their settings up to date (idempotent)",
    )
    del create
    return parser


def example_config() -> str:
    return resources.files("vspd.config").joinpath("example.toml").read_text(encoding="utf-8")


def _check_config(path: Path | None) -> int:
    shown = path or DEFAULT_CONFIG_PATH
    try:
        config = load_config(path)
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        print(f"{shown}: {len(exc.problems)} problem(s)", file=sys.stderr)
        return EXIT_FAILURE
    plugin_problem = _plugin_problem(config)
    if plugin_problem:
        print(f"{shown}: processor.plugin: {plugin_problem}", file=sys.stderr)
        print(f"{shown}: 1 problem(s)", file=sys.stderr)
        return EXIT_FAILURE
    print(f"{shown}: ok ({len(config.cameras)} camera(s), {len(config.alerts.rules)} rule(s))")
    return EXIT_OK


def _plugin_problem(config: VspdConfig) -> str:
    """A plug-in named "module:function" must import (from plugin_path) for check-config to pass.

    Only imported, not set up: a model that loads for minutes is the processor's business.
    """
    spec = config.processor.plugin
    if not spec or ":" not in spec:
        return ""
    try:
        from vspd.processor.plugin import import_target  # needs OpenCV, as the processor does
    except ImportError as exc:
        return f"cannot check it here: {exc}"
    try:
        import_target(spec, config.processor.plugin_path)
    except VspdError as exc:
        return str(exc)
    return ""


def _topics_create(config: VspdConfig, _args: argparse.Namespace) -> int:
    from vspd.runtime.topics import create_topics, topic_settings

    for outcome in create_topics(config.kafka):
        note = f"; {outcome.note}" if outcome.note else ""
        head = f"{outcome.topic} ({outcome.partitions} partitions{note})"
        if outcome.created:
            settings = topic_settings(config.kafka, outcome.topic)
            shown = " ".join(f"{name}={value}" for name, value in settings.items())
            print(f"created: {head}: {shown}")
        elif outcome.changed:
            shown = ", ".join(f"{name} {old} -> {new}" for name, old, new in outcome.changed)
            print(f"exists: {head}: changed {shown}")
        else:
            print(f"exists: {head}: settings up to date")
    return EXIT_OK


# Each subcommand's main(config, args) -> int, imported on use: `vspd check-config`
# must not need OpenCV or gRPC to load.
_COMMANDS = {
    "capture": "vspd.capture.daemon",
    "broker": "vspd.broker.daemon",
    "processor": "vspd.processor.daemon",
    "alerts": "vspd.alerts.daemon",
    "demo": "vspd.demo.runner",
    "report": "vspd.alerts.reports",
    "status": "vspd.observe.status",
    "replay": "vspd.broker.replay",
}


def _command(args: argparse.Namespace) -> Command:
    if args.command == "topics":
        return _topics_create
    module_name = _COMMANDS[args.command]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name != module_name:
            raise
        raise VspdError(f"this build of vspd has no {args.command!r} command yet") from None
    command: Command = module.main
    return command


def _quiet_opencv() -> None:
    """OpenCV's and FFmpeg's own stderr lines: silenced before OpenCV loads.

    They repeat on every reconnect, bypass the log format, and FFmpeg's print
    camera URLs with their passwords; vspd names the cause itself. The user's
    own settings of these variables win (for debugging).
    """
    os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # AV_LOG_QUIET
    os.environ.setdefault("OPENCV_VIDEOIO_DEBUG", "0")


def main(argv: Sequence[str] | None = None) -> int:
    _quiet_opencv()
    args = build_parser().parse_args(argv)
    if args.command == "config":
        sys.stdout.write(example_config())
        return EXIT_OK
    if args.command == "check-config":
        return _check_config(args.file or args.config)
    if args.command == "demo":
        # The demo writes and uses its own configuration: a half-edited fleet
        # config in /etc/vspd must not break it.
        return _run(args, VspdConfig(), "demo")
    try:
        # A daemon reads only its own secrets (least privilege, as its unit loads them).
        config = load_config(args.config, secret_scopes=DAEMON_SCOPES.get(args.command))
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return EXIT_FAILURE
    daemon_name = args.command if args.command != "capture" else f"capture@{args.camera}"
    limit_malloc_arenas()  # before any thread: the arenas are made as threads allocate
    return _run(args, config, daemon_name)


def _run(args: argparse.Namespace, config: VspdConfig, daemon_name: str) -> int:
    configure_logging(daemon_name, args.log_level or config.logging.level, config.logging.format)
    try:
        return _command(args)(config, args)
    except VspdError as exc:
        print(f"vspd {args.command}: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        # A command that reads Kafka once (status, replay) and cannot: one line, no traceback.
        failure = _kafka_failure(config, exc)
        if failure is None:
            raise
        print(f"vspd {args.command}: {failure}", file=sys.stderr)
        return EXIT_FAILURE


def _kafka_failure(config: VspdConfig, exc: Exception) -> str | None:
    # Imported here: `vspd check-config` and `vspd config` load no Kafka client.
    from confluent_kafka import KafkaError, KafkaException

    from vspd.runtime.kafka import describe_failure, hint_for

    if not isinstance(exc, KafkaException):
        return None
    error = exc.args[0] if exc.args else None
    reason = describe_failure(error) if isinstance(error, KafkaError) else str(exc)
    hint = hint_for(reason)
    where = f"Kafka at {config.kafka.bootstrap_servers}"
    return f"{where}: {reason}" + (f" ({hint})" if hint else "")


if __name__ == "__main__":
    sys.exit(main())
