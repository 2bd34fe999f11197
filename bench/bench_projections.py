"""Projection benchmarks: projector throughput, replay throughput, status lookups, visibility.

1. Projector: generated job histories on a real broker, projected into chDB by the
   projector (``Projector.run_forever`` in a thread) from offset 0 to the end; events/s.
2. Replay: the same log read and folded with the processor's state machine (what
   ``brigade replay`` verifies), and rebuilt into a fresh database; events/s.
3. Status lookups through ``ClickHouseReadModel.job`` with ``LOOKUP_JOBS`` jobs in ``jobs``,
   interleaved with the FINAL lookup it replaced, quiet and while a thread inserts into
   ``jobs`` every 100 ms as the projector does.
4. Visibility: produce → projected (``Projector.wait_for``) for single jobs while a bulk
   load streams in.
5. Resume cost: ``stored_offsets`` (run on every assignment) on the projected table.

    .venv/bin/python -m bench.bench_projections [JOBS] [LOOKUP_JOBS] [--only replay|lookups]

``--only replay`` runs step 2 alone (with one process and with one per core);
``--only lookups`` runs step 3 alone, without a broker. Set
``BRIGADE_BENCH_BOOTSTRAP`` to use a running broker; the benchmark's topics are deleted
from it afterwards.
"""

from __future__ import annotations

import argparse
import os
import random
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench.bench_kafka import bench_broker
from bench.report import emit, percentile
from brigade.kafka import topology
from brigade.kafka.clients import make_admin, make_producer
from brigade.settings import KafkaSettings, Settings, TopicSettings
from projections.backends import connect
from projections.logread import log_end_offsets
from projections.migrations import apply_migrations
from projections.projector import Projector
from projections.queries import ClickHouseReadModel
from projections.replay import rebuild, replay_log
from projections.rows import JOB_COLUMNS
from projections.simulate import key_of, stream
from projections.types import ClickHouse
from projections.writer import stored_offsets
from schemas.codec import Codec


def _settings(bootstrap: str, folder: Path) -> Settings:
    prefix = f"bench{uuid.uuid4().hex[:8]}"
    return Settings(
        data_dir=folder / "brigade",
        kafka=KafkaSettings(bootstrap=bootstrap, topic_prefix=prefix, client_id=prefix),
        topics=TopicSettings(partitions=6), clickhouse_url=f"chdb://{folder / 'clickhouse'}",
    )


def _produce(settings: Settings, topic: str, jobs: int, seed: int) -> int:
    codec = Codec()
    producer = make_producer(settings, **{"linger.ms": 20, "batch.size": 1_000_000})
    count = 0
    for event in stream(jobs, seed=seed, spacing_ms=1.0):
        while True:
            try:
                producer.produce(topic, key=key_of(event), value=codec.encode(event))
                break
            except BufferError:
                producer.poll(0.05)
        count += 1
    producer.flush(60)
    return count


def bench_projector(settings: Settings, ch: ClickHouse, events: int) -> dict[str, Any]:
    """Project the whole log from offset 0; events/s."""
    topic = topology.Topology(settings).job_events
    ends = log_end_offsets(settings, topic)
    projector = Projector(settings=settings, clickhouse=ch, batch_size=10_000)
    started = time.perf_counter()
    projector.start()
    assert projector.wait_for_offsets(ends, timeout_s=900), projector.error
    seconds = time.perf_counter() - started
    projector.stop()
    return {"what": "projector Kafka -> chDB", "events": events, "seconds": round(seconds, 2),
            "events_per_s": round(events / seconds)}


def bench_replay(settings: Settings, ch: ClickHouse, events: int) -> list[dict[str, Any]]:
    """Fold the log (verify's work) in one process and in one per core; rebuild it into a fresh database."""
    topic = topology.Topology(settings).job_events
    rows = []
    for processes in (1, os.cpu_count() or 1):
        # Best of two: the machine is shared, and a neighbour's burst is not our cost.
        runs = [replay_log(settings, topic, processes=processes) for _ in range(2)]
        replayed = min(runs, key=lambda run: run.seconds)
        assert replayed.events == events and not replayed.illegal, replayed
        rows.append({"what": f"replay: read + decode + fold, {processes} process(es)",
                     "events": replayed.messages, "seconds": round(replayed.seconds, 2),
                     "events_per_s": round(replayed.events_per_s),
                     "events_per_cpu_s": round(replayed.events_per_cpu_s)})
    stats, seconds = rebuild(settings, ch)
    rows.append({"what": "replay --into (rebuild)", "events": stats.messages, "seconds": round(seconds, 2),
                 "events_per_s": round(stats.messages / seconds)})
    return rows


def _synthetic_jobs(ch: ClickHouse, count: int) -> list[tuple[str, str]]:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    tenants = [f"tenant-{i}" for i in range(20)]
    keys = [(tenants[i % 20], f"{uuid.UUID(int=i)}") for i in range(count)]
    columns: dict[str, list[Any]] = {name: [] for name in JOB_COLUMNS}
    for i, (tenant, job_id) in enumerate(keys):
        at = start + timedelta(milliseconds=i)
        row = (job_id, tenant, "succeeded", 4, 1, at, at, "default", "batch", "m", "batch", "JobSucceeded",
               None, "", None, '{"embedding":[0.1]}', False, False, at, at, at)
        for name, value in zip(JOB_COLUMNS, row, strict=True):
            columns[name].append(value)
    for offset in range(0, count, 50_000):
        ch.insert_columns("jobs", {k: v[offset:offset + 50_000] for k, v in columns.items()})
    # A second version of a tenth of the rows, so FINAL has real work to do.
    newer = {k: v[: count // 10] for k, v in columns.items()}
    newer["sequence"] = [5] * len(newer["sequence"])
    ch.insert_columns("jobs", newer)
    return keys


# The status lookup as it was before issue 15 (FINAL, default threads): measured in the same
# run as ClickHouseReadModel.job, interleaved, so a noisy machine weighs on both alike.
_BEFORE_LOOKUP = (
    "SELECT job_id, tenant_id, status, attempts, created_at, updated_at, sequence, pool, model, priority, "
    "error, result_ref, result_inline, cancel_requested FROM jobs FINAL "
    "WHERE tenant_id = {tenant:String} AND job_id = {job:String} LIMIT 1"
)


def bench_lookups(ch: ClickHouse, count: int, samples: int = 2000) -> list[dict[str, Any]]:
    """p50/p99 of ``ClickHouseReadModel.job`` against the FINAL lookup, quiet and under inserts.

    Under load a thread inserts like the projector into the same connection: every 100 ms
    a batch of newer states of existing jobs and of new jobs, leaving small parts for the
    merges to catch up with.
    """
    keys = _synthetic_jobs(ch, count)
    rows = _compare_lookups(ch, keys, samples, "quiet")
    load = _InsertLoad(ch, keys)
    load.start()
    try:
        loaded = _compare_lookups(ch, keys, samples, "under 100 ms inserts", same=False)
    finally:
        load.stop()
    rows += [{**row, "what": f"{row['what']} ({load.parts_text()} in jobs)"} for row in loaded]
    # Merges behind (a burst, a catch-up): 40 small parts the merges have not reached yet.
    ch.execute("SYSTEM STOP MERGES jobs")
    try:
        behind = _InsertLoad(ch, keys, batch=50)
        for _ in range(40):
            behind.insert_once()
        rows += _compare_lookups(ch, keys, samples // 4, f"merges stopped, {behind.active_parts()} parts")
    finally:
        ch.execute("SYSTEM START MERGES jobs")
    return rows


def _compare_lookups(
    ch: ClickHouse, keys: list[tuple[str, str]], samples: int, when: str, *, same: bool = True
) -> list[dict[str, Any]]:
    model = ClickHouseReadModel(ch)
    rng = random.Random(1)
    timings: dict[str, list[float]] = {"before": [], "after": []}
    cpu: dict[str, float] = {"before": 0.0, "after": 0.0}
    for index in range(samples):
        tenant, job_id = rng.choice(keys)
        order = ("before", "after") if index % 2 else ("after", "before")
        seen: dict[str, tuple[int, str]] = {}
        for which in order:
            cpu_at, started = time.process_time(), time.perf_counter()
            if which == "after":
                job = model.job(tenant, job_id)
                found = (job.sequence, job.status) if job is not None else None
            else:
                rows = ch.query_dicts(_BEFORE_LOOKUP, {"tenant": tenant, "job": job_id})
                found = (rows[0]["sequence"], rows[0]["status"]) if rows else None
            timings[which].append((time.perf_counter() - started) * 1000)
            cpu[which] += time.process_time() - cpu_at
            assert found is not None, (which, tenant, job_id)
            seen[which] = found
        # With no writer running, both queries must pick the same version.
        assert same is False or seen["before"] == seen["after"], (tenant, job_id, seen)
    jobs = ch.query("SELECT count() FROM jobs FINAL")[0][0]
    result = []
    for which, label in (("before", "FINAL (before)"), ("after", "ClickHouseReadModel.job")):
        result.append({
            "what": f"status lookup, {label}, {jobs:,} jobs, {when}", "events": samples,
            "p50_ms": round(percentile(timings[which], 0.5), 2),
            "p99_ms": round(percentile(timings[which], 0.99), 2),
            "cpu_ms_per_lookup": round(cpu[which] * 1000 / samples, 2),
        })
    before, after = (percentile(timings[w], 0.99) for w in ("before", "after"))
    result[-1]["p99_after_over_before"] = round(after / before, 2)
    return result


class _InsertLoad:
    """The projector's write pattern on ``jobs``: one insert every 100 ms from a thread."""

    def __init__(self, ch: ClickHouse, keys: list[tuple[str, str]], batch: int = 200) -> None:
        self._ch, self._keys, self._batch = ch, keys, batch
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._rng, self._sequence, self._fresh = random.Random(7), 10, 0
        self.parts: list[int] = []

    def start(self) -> None:
        """Start inserting; returns after the first few batches so parts have piled up."""
        self._thread.start()
        deadline = time.monotonic() + 30
        while len(self.parts) < 3 and time.monotonic() < deadline and self._thread.is_alive():
            time.sleep(0.1)

    def stop(self) -> None:
        """Stop inserting and wait for the thread."""
        self._stop.set()
        self._thread.join()

    def parts_text(self) -> str:
        """How many active parts ``jobs`` had while the load ran (sampled by the thread)."""
        ordered = sorted(self.parts) or [0]
        return f"{ordered[len(ordered) // 2]}-{ordered[-1]} parts"

    def active_parts(self) -> int:
        """Active parts of ``jobs`` now."""
        return int(self._ch.query(
            "SELECT count() FROM system.parts "
            "WHERE database = currentDatabase() AND table = 'jobs' AND active"
        )[0][0])

    def insert_once(self) -> None:
        """One batch: mostly newer states of known jobs, a tenth new jobs (the table grows slowly)."""
        self._sequence += 1
        new_jobs = self._batch // 10
        keys = self._rng.sample(self._keys, self._batch - new_jobs)
        keys += [(f"tenant-{(self._fresh + i) % 20}", f"load-{self._fresh + i}") for i in range(new_jobs)]
        self._fresh += new_jobs
        at = datetime(2026, 2, 1, tzinfo=UTC)
        row = ("running", self._sequence, 1, at, at, "default", "batch", "m", "batch", "JobStarted",
               None, "", None, None, False, False, at, at, None)
        columns = dict(zip(JOB_COLUMNS, zip(*[(job, tenant, *row) for tenant, job in keys], strict=True),
                           strict=True))
        self._ch.insert_columns("jobs", columns)

    def _run(self) -> None:
        rounds = 0
        while not self._stop.wait(0.1):
            self.insert_once()
            rounds += 1
            if rounds % 10 == 0:
                self.parts.append(self.active_parts())


def bench_visibility(settings: Settings, ch: ClickHouse, probes: int = 100) -> dict[str, Any]:
    """Produce → projected latency of single jobs while a bulk load streams in."""
    topic = topology.Topology(settings).job_events
    projector = Projector(settings=settings, clickhouse=ch)
    projector.start()
    ends = log_end_offsets(settings, topic)
    assert projector.wait_for_offsets(ends, timeout_s=900)
    load = threading.Thread(target=_produce, args=(settings, topic, 5_000, 99), daemon=True)
    load.start()
    codec = Codec()
    producer = make_producer(settings, **{"linger.ms": 0})
    timings = []
    for i in range(probes):
        event = stream(1, seed=10_000 + i, paths=("succeeded",))[0]
        started = time.perf_counter()
        producer.produce(topic, key=key_of(event), value=codec.encode(event))
        producer.flush(10)
        assert projector.wait_for(event.envelope.job_id, event.envelope.sequence, timeout_s=30)
        timings.append((time.perf_counter() - started) * 1000)
    load.join()
    projector.stop()
    return {"what": "produce -> projected, under load", "events": probes,
            "p50_ms": round(percentile(timings, 0.5), 1), "p99_ms": round(percentile(timings, 0.99), 1)}


def main() -> None:
    """Run the projection benchmarks and write ``bench/results/projections[-replay].json``."""
    parser = argparse.ArgumentParser(prog="python -m bench.bench_projections")
    parser.add_argument("jobs", type=int, nargs="?", default=20_000)
    parser.add_argument("lookup_jobs", type=int, nargs="?", default=100_000)
    parser.add_argument("--only", choices=["replay", "lookups"], help="run one part only")
    parser.add_argument("--lookup-samples", type=int, default=2000, help="look-ups per phase and query")
    args = parser.parse_args()
    jobs, lookup_jobs, only_replay = args.jobs, args.lookup_jobs, args.only == "replay"
    if args.only == "lookups":
        _emit_lookups(lookup_jobs, args.lookup_samples)
        return
    with bench_broker() as bootstrap, tempfile.TemporaryDirectory() as folder:
        settings = _settings(bootstrap, Path(folder))
        admin = make_admin(settings)
        specs = topology.Topology(settings).specs()
        topology.apply(admin, specs)
        try:
            events = _produce(settings, topology.Topology(settings).job_events, jobs, seed=1)
            rows = _replay_rows(settings, events) if only_replay else _all_rows(settings, events, lookup_jobs)
        finally:
            admin.delete_topics([spec.name for spec in specs])
    columns = ("what", "events", "seconds", "events_per_s", "events_per_cpu_s", "p50_ms", "p99_ms",
               "cpu_ms_per_lookup", "p99_after_over_before")
    table = [{c: row.get(c, "") for c in columns} for row in rows]
    name = "projections-replay" if only_replay else "projections"
    extra = {"jobs": jobs, "lookup_jobs": lookup_jobs, "load_average": os.getloadavg()}
    emit(name, "Projections", table, extra=extra)


def _emit_lookups(lookup_jobs: int, samples: int) -> None:
    with tempfile.TemporaryDirectory() as folder:
        lookups = connect(f"chdb://{Path(folder) / 'clickhouse'}", database="lookups")
        apply_migrations(lookups)
        rows = bench_lookups(lookups, lookup_jobs, samples)
        lookups.close()
    columns = ("what", "events", "p50_ms", "p99_ms", "cpu_ms_per_lookup", "p99_after_over_before")
    table = [{c: row.get(c, "") for c in columns} for row in rows]
    emit("projections-lookups", "Status lookups", table,
         extra={"lookup_jobs": lookup_jobs, "load_average": os.getloadavg()})


def _replay_rows(settings: Settings, events: int) -> list[dict[str, Any]]:
    return bench_replay(settings, connect(settings.clickhouse_url, database="rebuilt"), events)


def _all_rows(settings: Settings, events: int, lookup_jobs: int) -> list[dict[str, Any]]:
    live = connect(settings.clickhouse_url, database="live")
    apply_migrations(live)
    rows: list[dict[str, Any]] = [bench_projector(settings, live, events)]
    started = time.perf_counter()
    stored_offsets(live)
    rows.append({"what": "stored_offsets() at assignment", "events": events,
                 "seconds": round(time.perf_counter() - started, 4)})
    rows += _replay_rows(settings, events)
    lookups = connect(settings.clickhouse_url, database="lookups")
    apply_migrations(lookups)
    rows += bench_lookups(lookups, lookup_jobs)
    rows.append(bench_visibility(settings, live))
    return rows


if __name__ == "__main__":
    main()
