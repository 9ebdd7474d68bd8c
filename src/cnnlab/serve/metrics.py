"""Prometheus metrics of the server (prometheus_client, on a registry of its own): requests by path
and status, latency, the sizes of the batches the model ran, and connections the server's limits
closed unanswered."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response

log = logging.getLogger("cnnlab.serve")

KNOWN_PATHS = ("/predict", "/explain", "/model", "/healthz", "/metrics", "/")


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("cnnlab_requests", "HTTP requests by path and status",
                                ["path", "status"], registry=self.registry)
        self.latency = Histogram("cnnlab_request_seconds", "Request latency", ["path"],
                                 registry=self.registry,
                                 buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
        self.batch_size = Histogram("cnnlab_batch_size", "Images per forward pass",
                                    registry=self.registry,
                                    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256))
        self.dropped = Counter("cnnlab_dropped_connections", "Connections closed unanswered, by "
                               "reason (header_timeout, body_timeout, evicted)", ["reason"],
                               registry=self.registry)

    def render(self) -> bytes:
        return generate_latest(self.registry)

    def count(self, path: str, status: int) -> None:
        # Unknown paths are counted as one label, so a scan cannot grow the label set without end.
        self.requests.labels(path if path in KNOWN_PATHS else "other", str(status)).inc()

    async def middleware(self, request: Request,
                         call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        path = request.url.path if request.url.path in KNOWN_PATHS else "other"
        started = time.perf_counter()
        try:
            response = await call_next(request)
        except ClientDisconnect:  # the client left mid-upload: nobody to answer, nothing to log
            response = Response(status_code=499)
        except Exception:  # noqa: BLE001  (every error is JSON and counted; the cause is logged)
            log.exception("unexpected error serving %s", path)
            response = JSONResponse({"error": "internal error: the server log has the cause"},
                                    status_code=500)
        self.latency.labels(path).observe(time.perf_counter() - started)
        self.count(path, response.status_code)
        return response
