"""Fixtures for the ingress tests: tenants, a served API factory, an HTTP client."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from brigade.kafka.topology import Topology
from brigade.settings import Settings
from ingress.app import create_app
from ingress.tenants import TenantStore
from projections.backends import connect
from tests.ingress.support import HAVE_CLICKHOUSE_READ_MODEL, MemoryReadModel, StandInProcessor, serve


@dataclass
class Api:
    """A running API: its URL, tenants' keys, and helpers to drive it."""

    url: str
    settings: Settings
    keys: dict[str, str]
    processor: StandInProcessor

    def client(self, tenant: str = "acme", **kwargs: Any) -> httpx.Client:
        """An httpx client authenticated as ``tenant``."""
        headers = {"Authorization": f"Bearer {self.keys[tenant]}"} if tenant else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30, **kwargs)

    def as_owner(self, sql: str) -> None:
        """Run ``sql`` on the API's tables as their owner.

        The operator endpoint is read-only; this is a session of the test's own (the API
        serves from this process, and chDB shares one data directory per process).
        """
        clickhouse = connect(self.settings.clickhouse_url)
        try:
            clickhouse.execute(sql)
        finally:
            clickhouse.close()


@pytest.fixture
def tenant_store(settings: Settings) -> TenantStore:
    """The test's tenants file."""
    return TenantStore.from_settings(settings)


@pytest.fixture
def start_api(
    settings: Settings, topics: Topology, tenant_store: TenantStore
) -> Iterator[Callable[..., Api]]:
    """Factory: serve the API (with real Kafka, and chDB when the projections are present)."""
    keys = {
        "acme": tenant_store.add("acme")[1],
        "globex": tenant_store.add("globex")[1],
    }
    with ExitStack() as stack:

        def _start(*, tenants: dict[str, dict[str, Any]] | None = None, **options: Any) -> Api:
            for name, config in (tenants or {}).items():
                keys[name] = tenant_store.add(name, **config)[1]
            memory = None if HAVE_CLICKHOUSE_READ_MODEL else MemoryReadModel()
            options.setdefault("lag_group", f"{settings.kafka.topic_prefix}-processor")
            app = create_app(settings, read_model=memory, tenants=tenant_store, **options)
            url = stack.enter_context(serve(app))
            return Api(url=url, settings=settings, keys=keys, processor=StandInProcessor(settings, memory))

        yield _start


@pytest.fixture
def api(start_api: Callable[..., Api]) -> Api:
    """The API with default options."""
    return start_api()
