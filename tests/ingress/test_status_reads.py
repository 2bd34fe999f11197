"""Status reads from memory (the embedded projector's inserted states) and from ClickHouse.

Through the real stack: HTTP on a uvicorn socket, the real broker, the API's embedded
projector over chDB. Which side answered is read from ``brigade_api_status_reads`` on
``/metrics``; what ClickHouse holds is read through a session of the test's own.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

import httpx
import pytest

from brigade.endpoints import operator_token_path
from brigade.kafka.clients import make_producer
from brigade.kafka.topology import Topology
from brigade.settings import Settings
from ingress.routes import status_body
from projections.backends import connect
from projections.queries import ClickHouseReadModel
from projections.simulate import job_events, key_of
from projections.types import ClickHouse
from schemas import records as r
from schemas.codec import Codec
from tests.ingress.conftest import Api
from tests.ingress.support import HAVE_CLICKHOUSE_READ_MODEL, wait_until

pytestmark = pytest.mark.skipif(not HAVE_CLICKHOUSE_READ_MODEL, reason="needs the projections' chDB")

_CACHE_JOBS = 3
_INLINE_MAX = 64


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """A small cache (3 jobs, inline results up to 64 characters), so its bounds show."""
    api = settings.api.model_copy(update={"status_cache_jobs": _CACHE_JOBS,
                                          "status_cache_inline_max": _INLINE_MAX})
    return settings.model_copy(update={"api": api})


@pytest.fixture
def clickhouse(api: Api) -> Iterator[ClickHouse]:
    """A session of the test's own on the API's chDB database (same process, same engine)."""
    ch = connect(api.settings.clickhouse_url)
    try:
        yield ch
    finally:
        ch.close()


def _emit(api: Api, events: list[r.LifecycleEvent]) -> None:
    producer = make_producer(api.settings)
    codec = Codec()
    for event in events:
        producer.produce(Topology(api.settings).job_events, key=key_of(event), value=codec.encode(event))
    assert producer.flush(30) == 0


def _job(api: Api, *, tenant: str = "acme", result: str = '{"embedding":[0.1]}') -> str:
    """A job that succeeded (4 events), projected; returns its id."""
    job_id = str(uuid.uuid4())
    events = job_events(job_id, tenant_id=tenant, pool="default", model="m", path="succeeded",
                        start=datetime.now(UTC))
    last = events[-1]
    assert isinstance(last, r.JobSucceeded)
    events[-1] = r.JobSucceeded(envelope=last.envelope, attempt=last.attempt, model=last.model,
                                latency_ms=last.latency_ms, result_inline=result, result_size=len(result))
    _emit(api, events)
    # ClickHouse may show the state a moment before memory does (the batch's inserts end
    # with job_events): wait for memory to answer.
    wait_until(lambda: _in_memory(api, tenant, job_id), timeout_s=60)
    return job_id


def _in_memory(api: Api, tenant: str, job_id: str, status: str = "succeeded") -> bool:
    response, sources = _get(api, f"/v1/jobs/{job_id}", tenant)
    return response.status_code == 200 and response.json()["status"] == status and sources["memory"] == 1


def _reads(api: Api) -> dict[str, float]:
    token = operator_token_path(api.settings).read_text().strip()
    response = httpx.get(f"{api.url}/metrics", headers={"Authorization": f"Bearer {token}"}, timeout=30)
    assert response.status_code == 200, response.text
    found = {"memory": 0.0, "clickhouse": 0.0, "cached": 0.0}
    for line in response.text.splitlines():
        for source in ("memory", "clickhouse"):
            if line.startswith(f'brigade_api_status_reads_total{{source="{source}"}}'):
                found[source] = float(line.split()[1])
        if line.startswith("brigade_api_status_cache_jobs "):
            found["cached"] = float(line.split()[1])
    return found


def _get(api: Api, path: str, tenant: str = "acme") -> tuple[httpx.Response, dict[str, float]]:
    """GET ``path`` and how many look-ups each side answered for it."""
    before = _reads(api)
    with api.client(tenant) as http:
        response = http.get(path)
    after = _reads(api)
    return response, {source: after[source] - before[source] for source in ("memory", "clickhouse")}


def _clickhouse_body(clickhouse: ClickHouse, tenant: str, job_id: str) -> dict[str, object]:
    status = ClickHouseReadModel(clickhouse).job(tenant, job_id)
    assert status is not None
    body: dict[str, object] = json.loads(status_body(status).model_dump_json(exclude_none=True))
    return body


def test_a_finished_job_is_read_from_memory_and_agrees_with_clickhouse(
    api: Api, clickhouse: ClickHouse
) -> None:
    # Given a job whose terminal event the API's projector has inserted
    job_id = _job(api)
    # When its status and result are read
    status, status_sources = _get(api, f"/v1/jobs/{job_id}")
    result, result_sources = _get(api, f"/v1/jobs/{job_id}/result")
    # Then memory answered both, with what ClickHouse holds
    assert status_sources == {"memory": 1, "clickhouse": 0}
    assert result_sources == {"memory": 1, "clickhouse": 0}
    assert status.status_code == 200 and status.json() == _clickhouse_body(clickhouse, "acme", job_id)
    assert result.json() == {"jobId": job_id, "output": {"embedding": [0.1]}}


def test_another_tenant_never_sees_a_job_held_in_memory(api: Api) -> None:
    job_id = _job(api, tenant="acme")
    for path in (f"/v1/jobs/{job_id}", f"/v1/jobs/{job_id}/result"):
        response, sources = _get(api, path, tenant="globex")
        assert response.status_code == 404 and response.json()["error"]["code"] == "job_not_found"
        assert sources["memory"] == 0  # the entry is acme's: globex's look-up went to ClickHouse


def test_a_job_the_projector_never_inserted_is_read_from_clickhouse(api: Api, clickhouse: ClickHouse) -> None:
    # Given a jobs row written by someone else (another projector process, say)
    job_id = str(uuid.uuid4())
    clickhouse.execute(
        "INSERT INTO jobs (job_id, tenant_id, status, sequence, attempts, created_at, updated_at, pool) "
        "VALUES ({job:String}, 'acme', 'running', 3, 1, now64(6), now64(6), 'default')", {"job": job_id})
    # When it is read, ClickHouse answers it; another tenant still gets 404
    response, sources = _get(api, f"/v1/jobs/{job_id}")
    assert sources == {"memory": 0, "clickhouse": 1}
    assert response.status_code == 200 and response.json() == _clickhouse_body(clickhouse, "acme", job_id)
    assert _get(api, f"/v1/jobs/{job_id}", tenant="globex")[0].status_code == 404


def test_memory_holds_at_most_its_bound_and_evicted_jobs_come_from_clickhouse(
    api: Api, clickhouse: ClickHouse
) -> None:
    jobs = [_job(api) for _ in range(_CACHE_JOBS + 2)]
    assert _reads(api)["cached"] == _CACHE_JOBS
    # The first jobs were evicted (least recently used): ClickHouse answers them, the same way
    oldest, oldest_sources = _get(api, f"/v1/jobs/{jobs[0]}")
    newest, newest_sources = _get(api, f"/v1/jobs/{jobs[-1]}")
    assert oldest_sources == {"memory": 0, "clickhouse": 1}
    assert newest_sources == {"memory": 1, "clickhouse": 0}
    assert oldest.json() == _clickhouse_body(clickhouse, "acme", jobs[0])
    assert newest.json() == _clickhouse_body(clickhouse, "acme", jobs[-1])


def test_a_large_inline_result_is_not_held_in_memory(api: Api) -> None:
    big = json.dumps({"embedding": [0.125] * 40})
    assert len(big) > _INLINE_MAX
    job_id = _job(api, result=big)
    # The status body shows no result: memory answers it
    status, status_sources = _get(api, f"/v1/jobs/{job_id}")
    assert status.json()["status"] == "succeeded" and status_sources == {"memory": 1, "clickhouse": 0}
    # The result is read where it is kept
    result, result_sources = _get(api, f"/v1/jobs/{job_id}/result")
    assert result_sources == {"memory": 0, "clickhouse": 1}
    assert result.json() == {"jobId": job_id, "output": json.loads(big)}


def test_memory_never_answers_older_than_clickhouse_while_an_insert_half_failed(
    api: Api, clickhouse: ClickHouse
) -> None:
    # Given a running job held in memory
    job_id = str(uuid.uuid4())
    events = job_events(job_id, tenant_id="acme", pool="default", model="m", path="succeeded",
                        start=datetime.now(UTC))
    _emit(api, events[:3])
    wait_until(lambda: _in_memory(api, "acme", job_id, "running"), timeout_s=60)
    # And job_events gone, so the next batch's `jobs` insert lands and its `job_events` insert fails
    api.as_owner("RENAME TABLE brigade.job_events TO brigade.job_events_away")
    try:
        _emit(api, events[3:])
        wait_until(lambda: ClickHouseReadModel(clickhouse).job("acme", job_id).status == "succeeded",  # type: ignore[union-attr]
                   timeout_s=60)
        # When the job is read while the batch is being retried
        response, sources = _get(api, f"/v1/jobs/{job_id}")
        # Then ClickHouse answers (succeeded), not the older state memory held
        assert response.json()["status"] == "succeeded" and sources == {"memory": 0, "clickhouse": 1}
    finally:
        api.as_owner("RENAME TABLE brigade.job_events_away TO brigade.job_events")
    # And once the batch goes in, memory answers again, with the new state
    wait_until(lambda: _in_memory(api, "acme", job_id), timeout_s=120)
