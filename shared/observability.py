"""JSON logs, the correlation id, Prometheus metrics and the request middleware.

The correlation id comes from the `X-Correlation-ID` request header (or is made up),
is echoed in the response, written into every event the request causes, and set again
by the consumer that handles that event, so one id follows a change across services.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
import uuid
from contextvars import ContextVar
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.errors import problem_response
from shared.events import CORRELATION_ID_PATTERN

CORRELATION_HEADER = "x-correlation-id"
_VALID_CORRELATION_ID = re.compile(CORRELATION_ID_PATTERN)
correlation_id: ContextVar[str | None] = ContextVar("correlation_id", default=None)


def current_correlation_id() -> str | None:
    return correlation_id.get()


class JsonLogFormatter(logging.Formatter):
    """One JSON object per line, with the service and the correlation id."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "service": self.service,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        cid = correlation_id.get()
        if cid:
            entry["correlation_id"] = cid
        for key in ("event_id", "event_type", "topic"):
            if hasattr(record, key):
                entry[key] = getattr(record, key)
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure_logging(service: str, level: str = "INFO", as_json: bool = True) -> None:
    """Send the process's logs to stderr, as JSON lines unless told otherwise."""
    handler = logging.StreamHandler(sys.stderr)
    if as_json:
        formatter: logging.Formatter = JsonLogFormatter(service)
        formatter.converter = time.gmtime
    else:
        formatter = logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s")
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.getLogger("aiokafka").setLevel(max(logging.WARNING, root.level))


class Metrics:
    """The metrics of one service, in a registry of its own (several apps may share a process)."""

    def __init__(self, service: str) -> None:
        self.registry = CollectorRegistry()
        labels = {"service": service}
        self.requests = Counter(
            "crm_http_requests",
            "HTTP requests handled",
            ["method", "route", "status"],
            registry=self.registry,
        ).labels
        self.request_seconds = Histogram(
            "crm_http_request_duration_seconds",
            "HTTP request latency",
            ["method", "route"],
            registry=self.registry,
        ).labels
        self.events_published = Counter(
            "crm_outbox_published",
            "events relayed from the outbox to Kafka",
            ["topic"],
            registry=self.registry,
        ).labels
        self.outbox_backlog = Gauge(
            "crm_outbox_backlog",
            "events not yet published, per source (counted at each relay pass)",
            ["source"],
            registry=self.registry,
        ).labels
        self.outbox_backlog_age = Gauge(
            "crm_outbox_backlog_age_seconds",
            "age of the oldest event not yet published, per source (0: none waiting)",
            ["source"],
            registry=self.registry,
        ).labels
        self.relay_failures = Counter(
            "crm_outbox_relay_failures",
            "relay passes that failed to publish",
            registry=self.registry,
        )
        self.relay_leader = Gauge(
            "crm_outbox_relay_leader",
            "1 while this replica holds the relay's lease (publishes the outbox), else 0",
            registry=self.registry,
        )
        self.events_consumed = Counter(
            "crm_events_consumed",
            "events handled by consumers",
            ["topic", "outcome"],
            registry=self.registry,
        ).labels
        self.consumer_restarts = Counter(
            "crm_consumer_restarts",
            "consumer restarts, by reason (failed: an error; stalled: messages waiting unread)",
            ["reason"],
            registry=self.registry,
        ).labels
        self.broker_up = Gauge(
            "crm_broker_up",
            "1 when the broker answered the last readiness check, 0 when it did not",
            registry=self.registry,
        )
        self.service_info = Gauge(
            "crm_service_info",
            "constant 1, labelled with the service",
            list(labels),
            registry=self.registry,
        )
        self.service_info.labels(**labels).set(1)


class RequestContextMiddleware:
    """Sets the correlation id and records request metrics (pure ASGI: no body buffering)."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = None
        for name, value in scope.get("headers", []):
            if name == CORRELATION_HEADER.encode():
                incoming = value.decode("latin-1")
                break
        if incoming is not None and not _VALID_CORRELATION_ID.match(incoming):
            response = problem_response(
                422,
                "Invalid input",
                "X-Correlation-ID must be 1 to 64 visible ASCII characters.",
                code="validation-error",
                errors=[
                    {
                        "field": "X-Correlation-ID",
                        "in": "header",
                        "message": "1 to 64 visible ASCII characters",
                        "type": "string_pattern_mismatch",
                    }
                ],
            )
            await response(scope, receive, send)
            return
        cid = incoming or uuid.uuid4().hex
        token = correlation_id.set(cid)
        status = 500
        started = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = list(message.get("headers", []))
                headers.append((CORRELATION_HEADER.encode(), cid.encode("latin-1")))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            route = scope.get("route")
            path = getattr(route, "path", None) or "unmatched"
            method = scope.get("method", "GET")
            self.metrics.requests(method, path, str(status)).inc()
            self.metrics.request_seconds(method, path).observe(time.perf_counter() - started)
            correlation_id.reset(token)
