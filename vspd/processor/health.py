"""The standard grpc.health.v1 service (vendored proto), for the whole server ("")
and each served service by its full name."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from typing import Any

import grpc

from vspd.health.v1 import health_pb2, health_pb2_grpc

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
SERVICE_UNKNOWN = health_pb2.HealthCheckResponse.SERVICE_UNKNOWN
# How often a Watch stream looks for a change (and for the server shutting down).
_WATCH_POLL_S = 0.2


class HealthServicer(health_pb2_grpc.HealthServicer):
    def __init__(self, services: list[str]) -> None:
        self._changed = threading.Condition()
        self._status: dict[str, Any] = dict.fromkeys(["", *services], NOT_SERVING)
        self._closed = False

    def set_all(self, status: Any) -> None:
        with self._changed:
            for service in self._status:
                self._status[service] = status
            self._changed.notify_all()

    def close(self) -> None:
        with self._changed:
            self._closed = True
            self._changed.notify_all()

    def status_of(self, service: str) -> Any:
        with self._changed:
            return self._status.get(service)

    async def Check(
        self, request: health_pb2.HealthCheckRequest, context: Any
    ) -> health_pb2.HealthCheckResponse:
        # A coroutine on the server's event loop: no worker thread, so a flood of
        # slow or hostile calls to the plug-in cannot keep health from answering.
        status = self.status_of(request.service)
        if status is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"unknown service {request.service!r}")
        return health_pb2.HealthCheckResponse(status=status)

    async def Watch(
        self, request: health_pb2.HealthCheckRequest, _context: Any
    ) -> AsyncIterator[health_pb2.HealthCheckResponse]:
        last = None
        while True:
            status = self.status_of(request.service)
            if status is None:
                status = SERVICE_UNKNOWN
            if status != last:
                last = status
                yield health_pb2.HealthCheckResponse(status=status)
            elif self._closed:
                return
            # A client that goes away cancels this generator here.
            await asyncio.sleep(_WATCH_POLL_S)
