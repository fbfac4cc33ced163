"""structlog setup: JSON lines for journald, readable lines at a terminal.

Every line carries the daemon (and, bound by the daemons, the camera or
partition). Values of keys that look secret are replaced before rendering.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
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
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(numeric)
