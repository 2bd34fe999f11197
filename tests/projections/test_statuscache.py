"""The status cache: its rules in memory, and two projectors of one group on a real broker."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from brigade.kafka.topology import Topology
from brigade.settings import Settings
from projections.fold import Tracked, fold_events
from projections.logread import log_end_offsets
from projections.projector import Projector
from projections.queries import ClickHouseReadModel
from projections.simulate import by_job, job_events, stream
from projections.statuscache import StatusCache
from projections.types import ClickHouse
from testkit.support import poll_until
from tests.projections.support import chdb, produce

__all__ = ["chdb"]


def _tracked(job_id: str, tenant: str = "acme") -> Tracked:
    folded = fold_events(job_events(job_id, tenant_id=tenant, pool="p", model="m", path="succeeded",
                                    start=datetime(2026, 1, 1, tzinfo=UTC)))
    assert folded is not None
    return folded


def _cache(**options: float) -> StatusCache:
    cache = StatusCache(max_jobs=int(options.pop("max_jobs", 10)), **options)  # type: ignore[arg-type]
    cache.renew()
    return cache


def test_entries_are_scoped_to_their_tenant_and_bounded() -> None:
    cache = _cache(max_jobs=2)
    cache.inserted({"a": _tracked("a"), "b": _tracked("b", "globex")}, {"a": 0, "b": 1})
    assert cache.get("acme", "a") is not None and cache.get("globex", "a") is None
    cache.get("globex", "b")  # read: b is now the most recently used
    cache.inserted({"c": _tracked("c")}, {"c": 2})
    assert len(cache) == 2 and cache.get("acme", "a") is None and cache.get("globex", "b") is not None


def test_a_batch_being_inserted_is_not_answered_from_memory() -> None:
    cache = _cache()
    cache.inserted({"a": _tracked("a")}, {"a": 0})
    cache.inserting(["a"])
    assert cache.get("acme", "a") is None


def test_nothing_is_answered_without_a_current_lease(monkeypatch: pytest.MonkeyPatch) -> None:
    cache = _cache(lease_s=5.0)
    cache.inserted({"a": _tracked("a")}, {"a": 0})
    now = 1_000.0
    monkeypatch.setattr("projections.statuscache.time.monotonic", lambda: now)
    cache.renew()
    assert cache.get("acme", "a") is not None
    now += 5.0  # the projector has not polled for a whole lease
    assert cache.get("acme", "a") is None
    cache.clear()
    assert len(cache) == 0


def test_a_large_inline_result_is_left_to_clickhouse() -> None:
    cache = _cache(inline_max=4)
    cache.inserted({"a": _tracked("a")}, {"a": 0})  # the simulated result is 20 characters
    status = cache.get("acme", "a", with_result=False)
    assert status is not None and status.status == "succeeded" and status.result_inline is None
    assert cache.get("acme", "a") is None


def _partition_of(ch: ClickHouse) -> dict[str, int]:
    rows = ch.query("SELECT job_id, any(kafka_partition) FROM job_events GROUP BY job_id")
    return {job: int(partition) for job, partition in rows}


def _held(cache: StatusCache, jobs: dict[str, str]) -> set[str]:
    return {job for job, tenant in jobs.items() if cache.get(tenant, job, with_result=False) is not None}


def test_partitions_revoked_in_a_rebalance_are_dropped(
    settings: Settings, topics: Topology, chdb: ClickHouse
) -> None:
    # Given one projector that has folded jobs on all three partitions
    first_events = stream(30, paths=("succeeded",), seed=11)
    produce(settings, topics.job_events, first_events)
    mine = StatusCache(max_jobs=1000)
    first = Projector(settings=settings, clickhouse=chdb, batch_ms=50, status_cache=mine)
    first.start()
    second: Projector | None = None
    try:
        assert first.wait_for_offsets(log_end_offsets(settings, topics.job_events), timeout_s=60)
        tenants = {job: evs[0].envelope.tenant_id for job, evs in by_job(first_events).items()}
        assert _held(mine, tenants) == set(tenants)
        # When a second projector joins the group and takes some partitions
        theirs = StatusCache(max_jobs=1000)
        second = Projector(settings=settings, clickhouse=chdb, batch_ms=50, status_cache=theirs)
        second.start()
        owned = _wait_for_split(first, second)
        # Then the first forgets every job of the partitions it gave up
        partition = _partition_of(chdb)
        assert not {job for job in _held(mine, tenants) if partition[job] not in owned}
        # And new jobs are held by the projector that folded them, agreeing with ClickHouse
        later_events = stream(30, paths=("succeeded",), seed=12)
        produce(settings, topics.job_events, later_events)
        ends = log_end_offsets(settings, topics.job_events)
        assert first.wait_for_offsets({p: o for p, o in ends.items() if p in owned}, timeout_s=60)
        assert second.wait_for_offsets({p: o for p, o in ends.items() if p not in owned}, timeout_s=60)
        later = {job: evs[0].envelope.tenant_id for job, evs in by_job(later_events).items()}
        partition = _partition_of(chdb)
        assert _held(mine, later) == {job for job in later if partition[job] in owned}
        assert _held(theirs, later) == {job for job in later if partition[job] not in owned}
        model = ClickHouseReadModel(chdb)
        for job, tenant in later.items():
            cache = mine if partition[job] in owned else theirs
            assert cache.get(tenant, job) == model.job(tenant, job)
    finally:
        if second is not None:
            second.stop()
        first.stop()
    # And a stopped projector's cache answers nothing
    assert len(mine) == 0 and not _held(mine, tenants)


def _wait_for_split(first: Projector, second: Projector) -> set[int]:
    """Poll until the two projectors own disjoint, non-empty partition sets; the first's."""
    def split() -> set[int] | None:
        a, b = set(first.projected_offsets()), set(second.projected_offsets())
        return a if a and b and not a & b and len(a | b) == 3 else None

    owned = poll_until(split, timeout_s=120, what="the group split the partitions")
    assert owned is not None
    return owned
