"""The app factory: every service is built the same way from its routers and event handlers.

The lifespan creates the engine, the outbox relay and the consumer; the request
dependency gives one session per request and commits it once, before the response
is sent, after which it wakes the relay if the request recorded events.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

from aiokafka import AIOKafkaClient
from fastapi import APIRouter, Depends, FastAPI, Request, Response
from fastapi.middleware.cors import CORSMiddleware
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from shared.auth import KeyRing
from shared.consumer import BatchHook, BulkHandler, EventConsumer, EventHandler
from shared.db import check_schema, create_engine, ping, session_factory
from shared.errors import install_error_handlers, problem_response
from shared.heavy import HeavyWork
from shared.kafka import client_options
from shared.limits import BodyLimitMiddleware, reject_unknown_query, reject_unstorable_text
from shared.observability import Metrics, RequestContextMiddleware
from shared.openapi import install_openapi
from shared.outbox import PENDING_FLAG, EventSource, OutboxRelay
from shared.settings import ServiceSettings
from shared.topics import TopicsMissing, ensure_platform_topics

log = logging.getLogger("crm.app")


@dataclass(frozen=True)
class ServiceDefinition:
    """What makes a service itself: its name, routes, event handlers and migrations."""

    name: str
    title: str
    description: str
    routers: Sequence[APIRouter]
    migrations_dir: Path
    handlers: Mapping[str, EventHandler] = field(default_factory=dict)
    # Runs after the handlers of each batch of events, in their transaction.
    after_batch: BatchHook | None = None
    # Event types applied a batch at a time (see shared/consumer.py).
    bulk_handlers: Mapping[str, BulkHandler] = field(default_factory=dict)
    # A poll's partitions applied at once, each in its own transaction (PostgreSQL only):
    # for handlers whose writes are the customer's own rows. One customer's events share
    # a partition number on every topic, and partitions of one number stay in order.
    concurrent_partitions: bool = False
    # Runs once the database is reachable, before requests are served (e.g. seed data).
    on_startup: Callable[[ServiceRuntime], Awaitable[None]] | None = None
    # Long-running jobs of the service (schedulers), started beside the relay and consumer.
    background: Sequence[Callable[[ServiceRuntime], Coroutine[Any, Any, None]]] = ()
    # Where the relay finds events besides the outbox table (a table that is its own outbox).
    event_sources: Sequence[EventSource] = ()
    # Routes that stream large bodies (CSV imports): they take `max_upload_bytes`.
    upload_paths: Sequence[str] = ()


@dataclass
class ServiceRuntime:
    """What the lifespan creates and the routes use (kept on `app.state.runtime`)."""

    settings: ServiceSettings
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    metrics: Metrics
    relay: OutboxRelay
    consumer: EventConsumer | None
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    kafka_probe: AIOKafkaClient | None = None
    broker_state: str = "unknown"  # as the last check found it
    heavy: HeavyWork = field(default_factory=HeavyWork)

    async def check_broker(self) -> str:
        """Probe the broker briefly, record what was found (state and metric), return it."""
        up = await self.broker_reachable(timeout_s=0.5)
        self.broker_state = "ok" if up else "unreachable"
        self.metrics.broker_up.set(1 if up else 0)
        return self.broker_state

    async def broker_reachable(self, timeout_s: float = 2.0) -> bool:
        """True when cluster metadata can be fetched from the broker within the timeout."""
        try:
            if self.kafka_probe is None:
                probe = AIOKafkaClient(
                    **{**client_options(self.settings, "probe"), "request_timeout_ms": 2000}
                )
                await asyncio.wait_for(probe.bootstrap(), timeout_s)
                self.kafka_probe = probe
            else:
                await asyncio.wait_for(self.kafka_probe.fetch_all_metadata(), timeout_s)
                if not self.kafka_probe.cluster.brokers():
                    return False
        except Exception:
            await self._close_probe()
            return False
        return True

    async def _close_probe(self) -> None:
        probe, self.kafka_probe = self.kafka_probe, None
        if probe is not None:
            with contextlib.suppress(Exception):
                await probe.close()


def runtime_of(request: Request) -> ServiceRuntime:
    runtime: ServiceRuntime = request.app.state.runtime
    return runtime


async def _request_session(request: Request) -> AsyncIterator[AsyncSession]:
    runtime = runtime_of(request)
    async with runtime.sessions() as session:
        try:
            yield session
            await session.commit()
        except BaseException:
            await session.rollback()
            raise
    if session.info.pop(PENDING_FLAG, False):
        runtime.relay.wake()


# scope="function": the commit runs when the route returns, before the response is sent,
# so a client never sees success for a write that failed to commit.
SessionDep = Annotated[AsyncSession, Depends(_request_session, scope="function")]


def _settings(request: Request) -> ServiceSettings:
    return runtime_of(request).settings


SettingsDep = Annotated[ServiceSettings, Depends(_settings)]


def _heavy(request: Request) -> HeavyWork:
    return runtime_of(request).heavy


HeavyDep = Annotated[HeavyWork, Depends(_heavy)]


def _health_router() -> APIRouter:
    router = APIRouter(tags=["health"])

    @router.get("/healthz", summary="The process is alive")
    async def healthz(request: Request) -> dict[str, str]:
        """Always 200 while the process answers; `broker` is the broker's state as the
        last readiness check found it (a liveness probe must not wait on the broker)."""
        return {"status": "ok", "broker": runtime_of(request).broker_state}

    @router.get(
        "/readyz",
        summary="The service's own database answers",
        response_model=None,
        responses={503: {"description": "The database does not answer."}},
    )
    async def readyz(request: Request) -> Response | dict[str, object]:
        """200 while the service's database answers, 503 (problem+json) otherwise. The
        broker's state is reported, not required: while Kafka is down the outbox keeps
        every write for the relay, so the service goes on serving."""
        runtime = runtime_of(request)
        checks: dict[str, str] = {}
        try:
            await asyncio.wait_for(ping(runtime.engine), 3)
            checks["database"] = "ok"
        except Exception as exc:
            checks["database"] = f"unreachable: {type(exc).__name__}"
        checks["broker"] = await runtime.check_broker()
        if checks["database"] != "ok":
            return problem_response(
                503,
                "Not ready",
                f"The database is {checks['database']}.",
                code="not-ready",
                errors=[{"field": name, "message": value} for name, value in checks.items()],
            )
        return {"status": "ready", "checks": checks}

    @router.get("/metrics", summary="Prometheus metrics", response_class=Response)
    async def metrics(request: Request) -> Response:
        """Prometheus text exposition format."""
        registry = runtime_of(request).metrics.registry
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return router


def tune_garbage_collector(settings: ServiceSettings) -> None:
    """For a service process, once its modules are imported: what exists now (modules,
    models, schemas) is frozen out of every later collection, and the young generation
    is collected every `gc_threshold` allocations instead of every 700."""
    if not settings.gc_threshold:
        return
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(settings.gc_threshold, older, oldest)


def create_service_app(definition: ServiceDefinition, settings: ServiceSettings) -> FastAPI:
    """Build a service's FastAPI app: routes under /v1, health, metrics, errors, background work."""
    metrics = Metrics(definition.name)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = create_engine(settings.database_url)
        try:
            await check_schema(engine, definition.migrations_dir, definition.name)
        except BaseException:
            await engine.dispose()
            raise
        relay = OutboxRelay(settings, engine, metrics, definition.event_sources)
        consumer = (
            EventConsumer(
                settings,
                engine,
                definition.handlers,
                metrics,
                relay.wake,
                definition.after_batch,
                definition.bulk_handlers,
                concurrent_partitions=definition.concurrent_partitions
                and engine.dialect.name == "postgresql",
            )
            if definition.handlers
            else None
        )
        runtime = ServiceRuntime(
            settings,
            engine,
            session_factory(engine),
            metrics,
            relay,
            consumer,
            heavy=HeavyWork(settings.heavy_work_slots),
        )
        app.state.runtime = runtime
        if definition.on_startup is not None:
            await definition.on_startup(runtime)
        if settings.run_background:
            try:
                await ensure_platform_topics(settings)
            except TopicsMissing as exc:  # the relay and consumer go on trying
                log.error("%s", exc)
            except Exception as exc:
                log.warning("the broker could not be asked for the topics yet: %r", exc)
            runtime.tasks.append(asyncio.create_task(relay.run(), name="outbox-relay"))
            if consumer is not None:
                runtime.tasks.append(asyncio.create_task(consumer.run(), name="consumer"))
            for job in definition.background:
                runtime.tasks.append(asyncio.create_task(job(runtime), name=job.__name__))
        log.info("%s started", definition.name)
        try:
            yield
        finally:
            await relay.stop()
            if consumer is not None:
                await consumer.stop()
            for task in runtime.tasks:
                task.cancel()
            await asyncio.gather(*runtime.tasks, return_exceptions=True)
            await runtime._close_probe()
            await engine.dispose()
            log.info("%s stopped", definition.name)

    app = FastAPI(
        title=definition.title,
        description=definition.description,
        version="1.0.0",
        lifespan=lifespan,
        dependencies=[Depends(reject_unknown_query), Depends(reject_unstorable_text)],
        docs_url=None,
        redoc_url=None,
    )
    install_openapi(app, settings.base_currency)
    app.state.keyring = KeyRing(settings.api_keys)
    app.state.settings = settings
    install_error_handlers(app)
    app.include_router(_health_router())
    for router in definition.routers:
        app.include_router(router, prefix="/v1")
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["*"],
            allow_headers=["*"],
            expose_headers=["ETag", "X-Correlation-ID", "Idempotent-Replayed"],
        )
    app.add_middleware(
        BodyLimitMiddleware,
        max_body_bytes=settings.max_body_bytes,
        max_upload_bytes=settings.max_upload_bytes,
        upload_paths=definition.upload_paths,
    )
    app.add_middleware(RequestContextMiddleware, metrics=metrics)
    return app
