"""The app factory and its lifespan: producer, lag monitor, chDB and the embedded projector."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from confluent_kafka import KafkaException
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response

from brigade.kafka.clients import NOT_IDEMPOTENT
from brigade.kafka.topology import Topology
from brigade.settings import Settings
from ingress.admin import Operator, ensure_operator_token
from ingress.backpressure import LagMonitor
from ingress.errors import ApiError
from ingress.metrics import ApiMetrics
from ingress.middleware import Authenticate, BodyLimit, ErrorBoundary, MetricsMiddleware
from ingress.openapi import openapi_bytes
from ingress.producer import CommandPublisher
from ingress.projector_health import ProjectorProbe
from ingress.readiness import Readiness
from ingress.routes import PUBLIC_PATHS, ROUTES
from ingress.service import Ingress
from ingress.tenants import TenantStore
from ingress.waiters import EventTail
from projections.backends import connect
from projections.backends.chdb import ChdbClickHouse
from projections.migrations import MIGRATIONS, apply_migrations
from projections.projector import Projector
from projections.queries import ClickHouseReadModel
from projections.readmodel import ReadModel
from projections.statuscache import StatusCache

log = logging.getLogger(__name__)
BULK_LINGER_MS = 2  # how long a batch request's burst of commands may gather before it is sent


async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return Response(exc.body(), status_code=exc.status, media_type="application/json", headers=exc.headers)


def create_app(
    settings: Settings,
    *,
    read_model: ReadModel | None = None,
    tenants: TenantStore | None = None,
    embedded_projector: bool | None = None,
    open_read_side: bool = True,
    lag_group: str | None = None,
    lag_interval_s: float = 1.0,
    produce_timeout_s: float = 15.0,
) -> Starlette:
    """Build the API.

    Args:
        settings: the deployment's settings.
        read_model: answer status reads from this; by default the projections' ClickHouse read
            model over ``settings.clickhouse_url`` (projections are part of every API).
        tenants: the tenant store; by default the tenants file of ``settings``.
        embedded_projector: run the projector in this process (default: when the ClickHouse URL
            is ``chdb://`` and no read model was given, since chDB files belong to one process).
        open_read_side: connect to ClickHouse for reads when no read model was given; off for
            extra uvicorn workers over chDB (one process per chDB directory), which then answer
            reads only for jobs they accepted themselves.
        lag_group: the consumer group whose lag drives back-pressure (default: the processor's).
        lag_interval_s: how often the lag is sampled.
        produce_timeout_s: how long a submission waits for the broker's ack before 503.
    """
    metrics = ApiMetrics()
    ingress = Ingress(settings=settings, metrics=metrics, read_model=read_model)
    ingress.produce_timeout_s = produce_timeout_s
    store = tenants or TenantStore.from_settings(settings)
    middleware = [
        Middleware(ErrorBoundary),
        Middleware(MetricsMiddleware, metrics=metrics),
        Middleware(BodyLimit, max_bytes=settings.api.max_body_bytes),
        Middleware(
            Authenticate, tenants=store, limiter=ingress.limiter, metrics=metrics, public=PUBLIC_PATHS
        ),
    ]
    own_read_side = read_model is None and open_read_side
    operator = Operator()
    probe = ProjectorProbe(metrics.registry)
    projector = (
        embedded_projector
        if embedded_projector is not None
        else (own_read_side and settings.clickhouse_url.startswith("chdb://"))
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with contextlib.AsyncExitStack() as stack:
            # Both producers are acks=all and not idempotent (see NOT_IDEMPOTENT for why).
            durable = {"message.timeout.ms": int(produce_timeout_s * 1000), **NOT_IDEMPOTENT}
            # One job per request: sent at once (a linger would be added to every interactive
            # job's latency). A batch request: its items are produced in one burst, and the
            # linger packs them into a few large produce requests.
            ingress.publisher = CommandPublisher(settings=settings, **durable, **{"linger.ms": 0})
            stack.callback(ingress.publisher.close, 10.0)
            ingress.bulk_publisher = CommandPublisher(
                settings=settings, **durable, **{"linger.ms": BULK_LINGER_MS}
            )
            stack.callback(ingress.bulk_publisher.close, 10.0)
            ingress.lag = LagMonitor(
                settings=settings,
                group=lag_group or Topology(settings).processor_group,
                interval_s=lag_interval_s,
            )
            ingress.lag.start()
            stack.callback(ingress.lag.stop)
            monitor = ingress.lag
            # Read at scrape time, on whichever port is scraped.
            metrics.consumer_lag.set_function(lambda: float("nan") if monitor.lag is None else monitor.lag)
            if settings.metrics_port:
                _serve_metrics(settings, metrics, stack)
            publisher = ingress.publisher
            ingress.readiness = Readiness(
                probe=lambda: publisher.reachable(2.0), required=ingress.required_topics()
            )
            ingress.readiness.start()
            stack.callback(ingress.readiness.stop)
            _start_tail(settings, ingress, stack)
            if own_read_side:
                statuses = _status_cache(settings, metrics) if projector else None
                ingress.read_model = _open_read_side(
                    settings, stack, run_projector=projector, operator=operator, probe=probe,
                    statuses=statuses,
                )
                ingress.statuses = statuses
            yield

    app = Starlette(
        routes=ROUTES, middleware=middleware, lifespan=lifespan, exception_handlers={ApiError: _api_error}
    )
    app.state.ingress = ingress
    app.state.operator = operator
    app.state.projector_probe = probe
    app.state.openapi = openapi_bytes(settings)
    app.state.operator_token = ensure_operator_token(settings)
    return app


def _start_tail(settings: Settings, ingress: Ingress, stack: contextlib.AsyncExitStack) -> None:
    """Tail the job events for ?wait=; without it (no topic yet) waits fall back to slow polling."""
    tail = EventTail(settings=settings, registry=ingress.waits, loop=asyncio.get_running_loop())
    try:
        tail.start()
    except (KafkaException, KeyError) as exc:
        log.warning("job events not tailed (%s): ?wait= polls the read model every second", exc)
        return
    ingress.tail = tail
    stack.callback(tail.stop)


def _serve_metrics(settings: Settings, metrics: ApiMetrics, stack: contextlib.AsyncExitStack) -> None:
    """Anonymous /metrics on the operator port (``metrics_host:metrics_port``), as other processes do."""
    from prometheus_client import start_http_server

    try:
        server, _ = start_http_server(
            settings.metrics_port, addr=settings.metrics_host, registry=metrics.registry
        )
    except OSError as exc:  # another worker process of this API serves the port already
        log.warning("metrics port %s not served by this process: %s", settings.metrics_port, exc)
        return
    stack.callback(server.server_close)
    stack.callback(server.shutdown)


def _status_cache(settings: Settings, metrics: ApiMetrics) -> StatusCache | None:
    """Memory for the states the embedded projector inserts (None when the setting is 0)."""
    size = settings.api.status_cache_jobs
    if size == 0:
        return None
    cache = StatusCache(max_jobs=size, inline_max=settings.api.status_cache_inline_max)
    metrics.status_cache_jobs.set_function(lambda: float(len(cache)))
    return cache


def _open_read_side(
    settings: Settings, stack: contextlib.AsyncExitStack, *, run_projector: bool, operator: Operator,
    probe: ProjectorProbe, statuses: StatusCache | None = None,
) -> ReadModel:
    """The projections' ClickHouse read model, migrated, and the projector when it runs here."""
    clickhouse = connect(settings.clickhouse_url)
    stack.callback(clickhouse.close)
    apply_migrations(clickhouse, MIGRATIONS)
    if isinstance(clickhouse, ChdbClickHouse):
        # This process now holds the chDB directory; operator commands come through here,
        # on a connection of their own that ClickHouse keeps read-only.
        readonly = ChdbClickHouse(clickhouse.path, database=clickhouse.database, readonly=True)
        stack.callback(readonly.close)
        operator.attach(readonly, ensure_operator_token(settings))
        stack.callback(operator.detach)
    if run_projector:
        projector = Projector(settings=settings, clickhouse=clickhouse, status_cache=statuses)
        projector.start()
        stack.callback(projector.stop)
        probe.projector = projector
    return ClickHouseReadModel(clickhouse)
