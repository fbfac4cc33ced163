"""`vspd processor`: serve the configured plug-in until told to stop."""

from __future__ import annotations

import argparse
import os
import sys
import threading

import structlog
from prometheus_client import CollectorRegistry

from vspd.config import VspdConfig
from vspd.processor.builtins import load_builtin
from vspd.processor.core import ProcessingCore
from vspd.processor.metrics import ProcessorMetrics
from vspd.processor.plugin import LoadedPlugin, load_plugin
from vspd.processor.server import WORKER_PREFIX, ProcessorServer
from vspd.processor.tls_refusals import TlsRefusalLog
from vspd.runtime.lifecycle import StopFlag
from vspd.runtime.readiness import Readiness
from vspd.runtime.service import serve

log = structlog.get_logger(__name__)


class ProcessorDaemon:
    name = "processor"

    def __init__(self, config: VspdConfig, registry: CollectorRegistry, stop: StopFlag) -> None:
        self.config = config.processor
        metrics = ProcessorMetrics(registry)
        self.core = ProcessingCore(metrics)
        self.server = ProcessorServer(self.config, self.core, config.processor_message_bytes)
        self.stop = stop
        self.tls_refusals = (
            TlsRefusalLog(metrics.tls_refused) if self.config.tls_cert_file else None
        )

    def start(self) -> None:
        if self.tls_refusals is not None:
            self.tls_refusals.start()
        # Listen first (health NOT_SERVING, calls UNAVAILABLE), then load the
        # model, which can take long; SERVING only once it is loaded.
        self.server.start()
        plugin = self._load()
        self.core.set_plugin(plugin)
        self.server.serving()
        log.info(
            "plug-in loaded", plugin=plugin.name, version=plugin.version, is_async=plugin.is_async
        )

    def _load(self) -> LoadedPlugin:
        if self.config.plugin:
            return load_plugin(self.config.plugin, self.config.plugin_path)
        return load_builtin(self.config)

    def step(self) -> None:
        # Serving happens on gRPC's threads; the main loop only keeps the
        # lifecycle's pings and status going.
        self.stop.wait(0.5)

    def readiness(self) -> Readiness:
        """Ready once the plug-in is loaded (gRPC health says SERVING from then on)."""
        return Readiness(self.core.plugin is not None, "loading the plug-in")

    def status(self) -> str:
        plugin = self.core.plugin.name if self.core.plugin else "loading"
        return (
            f"{plugin} on :{self.server.port}: {self.core.ok} ok, {self.core.failed} failed, "
            f"{self.core.in_flight} in flight"
        )

    def drain(self) -> None:
        self.server.stop(self.config.grace_period_s)
        if self.tls_refusals is not None:
            self.tls_refusals.stop()


def main(config: VspdConfig, args: argparse.Namespace) -> int:
    if getattr(args, "try_image", None) is not None:
        from vspd.processor.trial import run_once

        for line in run_once(config, args.try_image):
            print(line)  # noqa: T201 - the command's output
        return 0
    registry = CollectorRegistry()
    stop = StopFlag().install()
    daemon = ProcessorDaemon(config, registry, stop)
    code = serve(daemon, stop, config, registry, config.metrics.processor_port)
    stuck = [t.name for t in threading.enumerate() if t.name.startswith(WORKER_PREFIX)]
    if stuck:
        # A plug-in call that outlived the grace period would hold the interpreter's
        # exit for ever (it joins its pool's threads): leave without it, and say so.
        log.warning("exiting with plug-in calls still running", threads=len(stuck))
        sys.stdout.flush()
        os._exit(code)
    return code
