"""structlog setup: JSON lines for journald, readable lines at a terminal.

Every line carries the daemon (and, bound by the daemons, the camera or
partition). Values of keys that look secret are replaced before rendering.
"""

from __future__ import annotations

import logging
import re
import sys
import time
from collections.abc import Callable, MutableMapping
from typing import Any, Literal

import structlog

_SECRET_WORDS = ("password", "secret", "token", "credential", "authorization", "sasl_password")
REDACTED = "***"


def redact_secrets(
    _logger: Any, _method: str, event: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    for key in list(event):
        if any(word in key.lower() for word in _SECRET_WORDS):
            event[key] = REDACTED
    return event


REPEAT_WINDOW_S = 60.0
_VARIABLE = re.compile(r"\d+")


class RepeatFilter(logging.Filter):
    """A library line said again and again is said once per window, then with its count.

    librdkafka logs a failed connection several times a second while Kafka is
    down (hundreds of lines a minute); the operator needs the first one, then a
    reminder that it goes on. Lines are alike when they differ only in numbers
    (durations, counters, client instance numbers).
    """

    def __init__(
        self, window_s: float = REPEAT_WINDOW_S, clock: Callable[[], float] = time.monotonic
    ) -> None:
        super().__init__()
        self._window_s = window_s
        self._clock = clock
        self._seen: dict[tuple[str, int, str], tuple[float, int]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        key = (record.name, record.levelno, _VARIABLE.sub("#", record.getMessage()))
        now = self._clock()
        said_at, suppressed = self._seen.get(key, (float("-inf"), 0))
        if now - said_at < self._window_s:
            self._seen[key] = (said_at, suppressed + 1)
            return False
        if len(self._seen) > 1024:  # bounded, whatever a library says
            self._seen.clear()
        self._seen[key] = (now, 0)
        if suppressed:
            record.msg = f"{record.getMessage()} (and {suppressed} more like it since)"
            record.args = None
        return True


def configure_logging(
    daemon: str,
    level: str = "info",
    fmt: Literal["auto", "json", "console"] = "auto",
) -> None:
    json_lines = fmt == "json" or (fmt == "auto" and not sys.stdout.isatty())
    numeric = logging.getLevelName(level.upper())

    def add_daemon(
        _logger: Any, _method: str, event: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        # Static, not a context variable: threads (gRPC workers, camera reader) start with an empty context.
        event.setdefault("daemon", daemon)
        return event

    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        add_daemon,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        redact_secrets,
    ]
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if json_lines
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    final: list[Any] = [structlog.processors.format_exc_info] if json_lines else []
    structlog.configure(
        processors=[*shared, *final, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stdout),
        cache_logger_on_first_use=False,
    )
    structlog.contextvars.clear_contextvars()
    # Libraries on the standard logging module (librdkafka through
    # confluent-kafka's `logger`, grpc) render the same way, in the same stream.
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[*shared, structlog.stdlib.add_logger_name],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                *final,
                renderer,
            ],
        )
    )
    handler.addFilter(RepeatFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(numeric)
