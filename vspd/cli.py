"""The `vspd` command: one entry point, a thin main() per subcommand.

A user mistake is one clear line on stderr and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence
from importlib import resources
from pathlib import Path

from vspd import __version__
from vspd.config import DEFAULT_CONFIG_PATH, ConfigError, VspdConfig, load_config
from vspd.config.secrets import DAEMON_SCOPES
from vspd.errors import VspdError
from vspd.runtime.logging import configure_logging

EXIT_OK = 0
EXIT_FAILURE = 1

Command = Callable[[VspdConfig, argparse.Namespace], int]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vspd", description="Real-time video analytics for camera fleets over Kafka."
    )
    parser.add_argument("--version", action="version", version=f"vspd {__version__}")
    parser.add_argument(
        "--config",
        type=Path,
        default=None,
        help=f"configuration file (default {DEFAULT_CONFIG_PATH})",
    )
    parser.add_argument(
        "--log-level",
        choices=["debug", "info", "warning", "error"],
        help="overrides [logging] level",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    capture = commands.add_parser("capture", help="run one camera: frames into Kafka")
    capture.add_argument("--camera", required=True, help="the id of a [[cameras]] entry")
    commands.add_parser("broker", help="run the processing broker")
    commands.add_parser("processor", help="run the gRPC processor server")
    commands.add_parser("alerts", help="run the alerts and reports daemon")

    demo = commands.add_parser("demo", help="run the whole pipeline on this machine")
    demo.add_argument("--cameras", type=int, default=2, help="synthetic cameras (default 2)")
    demo.add_argument("--source", action="append", default=[], help="a camera source URI instead")
    demo.add_argument("--duration", type=float, default=60.0, help="seconds to run (default 60)")
    demo.add_argument("--bootstrap-servers", help="use this Kafka cluster, not an embedded broker")
    demo.add_argument("--report-dir", type=Path, default=Path("vspd-demo-report"))

    report = commands.add_parser("report", help="render a report of any period from the store")
    report.add_argument("--since", required=True, help="ISO time or date")
    report.add_argument("--until", required=True, help="ISO time or date")
    report.add_argument("--out", type=Path, required=True, help="directory to write into")

    check = commands.add_parser(
        "check-config", help="validate the configuration; exit 1 if invalid"
    )
    check.add_argument("--config", dest="check_config", type=Path, default=None)

    config = commands.add_parser("config", help="configuration helpers")
    config_actions = config.add_subparsers(dest="action", required=True, metavar="ACTION")
    config_actions.add_parser("example", help="print a complete, commented configuration")

    topics = commands.add_parser("topics", help="Kafka topic helpers")
    topics_actions = topics.add_subparsers(dest="action", required=True, metavar="ACTION")
    topics_actions.add_parser("create", help="create the configured topics (idempotent)")
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
    print(f"{shown}: ok ({len(config.cameras)} camera(s), {len(config.alerts.rules)} rule(s))")
    return EXIT_OK


def _topics_create(config: VspdConfig, _args: argparse.Namespace) -> int:
    from vspd.runtime.kafka import create_topics

    for outcome in create_topics(config.kafka):
        verb = "created" if outcome.created else "exists"
        note = f" ({outcome.note})" if outcome.note else ""
        print(f"{verb}: {outcome.topic} ({outcome.partitions} partitions){note}")
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


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "config":
        sys.stdout.write(example_config())
        return EXIT_OK
    if args.command == "check-config":
        return _check_config(args.check_config or args.config)
    try:
        # A daemon reads only its own secrets (least privilege, as its unit loads them).
        config = load_config(args.config, secret_scopes=DAEMON_SCOPES.get(args.command))
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return EXIT_FAILURE
    daemon_name = args.command if args.command != "capture" else f"capture@{args.camera}"
    configure_logging(daemon_name, args.log_level or config.logging.level, config.logging.format)
    try:
        return _command(args)(config, args)
    except VspdError as exc:
        print(f"vspd {args.command}: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
