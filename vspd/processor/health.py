"""The standard grpc.health.v1 service (vendored proto), for the whole server ("")
and each served service by its full name."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import grpc

from vspd.health.v1 import health_pb2, health_pb2_grpc

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
SERVICE_UNKNOWN = health_pb2.HealthCheckResponse.SERVICE_UNKNOWN
# How often a Watch stream wakes up to notice that the server is shutting down.
_WATCH_POLL_S = 1.0


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

    def Check(
        self, request: health_pb2.HealthCheckRequest, context: grpc.ServicerContext
    ) -> health_pb2.HealthCheckResponse:
        status = self.status_of(request.service)
        if status is None:
            context.abort(grpc.StatusCode.NOT_FOUND, f"unknown service {request.service!r}")
        return health_pb2.HealthCheckResponse(status=status)

    def Watch(
        self, request: health_pb2.HealthCheckRequest, context: grpc.ServicerContext
    ) -> Iterator[health_pb2.HealthCheckResponse]:
        last = None
        while context.is_active():
            with self._changed:
                status = self._status.get(request.service, SERVICE_UNKNOWN)
                if status == last:
                    if self._closed:
                        return
                    self._changed.wait(_WATCH_POLL_S)
                    continue
            last = status
            yield health_pb2.HealthCheckResponse(status=status)
