"""The projections' tables, as DDL statements the migrations apply in order.

Three kinds of table, all derived from ``brigade.job-events`` alone:

* ``job_events``: every lifecycle event, one row each, with the Avro bytes it came from
  (``raw``) and its Kafka position (``kafka_partition``, ``kafka_offset``). The position
  is what makes the projector exactly-once: on (re)assignment it resumes each partition
  after the highest offset this table holds, so a crash between insert and commit never
  inserts an event twice (see ``projections.projector``). ReplacingMergeTree keyed by
  ``event_id`` inside the job is only the backstop for raw reads.
* ``jobs``: the latest state per job, ``ReplacingMergeTree(sequence)``: a redelivered older
  state can never win over a newer one. Lookups read it with ``FINAL``.
* ``job_metrics_1m``: per tenant/pool/model/minute rollups, filled by a materialised view
  on ``job_events`` inserts. Because the view fires per inserted block, only exactly-once
  inserts into ``job_events`` keep it exact; ReplacingMergeTree merges cannot fix it.

``circuit_events`` records the pool-level breaker events that share the topic.
"""

from __future__ import annotations

JOB_EVENTS = """
CREATE TABLE IF NOT EXISTS job_events (
    event_id String,
    job_id String,
    tenant_id LowCardinality(String),
    sequence UInt64,
    event_type LowCardinality(String),
    occurred_at DateTime64(6, 'UTC'),
    status LowCardinality(String),
    pool LowCardinality(String),
    lane LowCardinality(String),
    model LowCardinality(String),
    attempt UInt32,
    reason String,
    error_class LowCardinality(String),
    terminal UInt8,
    rate_limited UInt8,
    queue_ms Nullable(Float64),
    processing_ms Nullable(Float64),
    latency_ms Nullable(Float64),
    total_ms Nullable(Float64),
    batch_size Nullable(UInt32),
    delay_ms Nullable(Float64),
    result_ref Nullable(String),
    raw String CODEC(ZSTD(1)),
    kafka_partition Int32,
    kafka_offset Int64,
    inserted_at DateTime64(3, 'UTC') DEFAULT now64(3),
    INDEX occurred_idx occurred_at TYPE minmax GRANULARITY 4,
    INDEX type_idx event_type TYPE set(32) GRANULARITY 4
) ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(occurred_at)
ORDER BY (tenant_id, job_id, sequence, event_id)
"""

JOBS = """
CREATE TABLE IF NOT EXISTS jobs (
    job_id String,
    tenant_id LowCardinality(String),
    status LowCardinality(String),
    sequence UInt64,
    attempts UInt32,
    created_at DateTime64(6, 'UTC'),
    updated_at DateTime64(6, 'UTC'),
    pool LowCardinality(String),
    lane LowCardinality(String),
    model LowCardinality(String),
    priority LowCardinality(String),
    last_event LowCardinality(String),
    error Nullable(String),
    error_class LowCardinality(String),
    result_ref Nullable(String),
    result_inline Nullable(String),
    cancel_requested UInt8,
    dead_lettered UInt8,
    queued_at Nullable(DateTime64(6, 'UTC')),
    started_at Nullable(DateTime64(6, 'UTC')),
    finished_at Nullable(DateTime64(6, 'UTC'))
) ENGINE = ReplacingMergeTree(sequence)
ORDER BY (tenant_id, job_id)
"""

CIRCUIT_EVENTS = """
CREATE TABLE IF NOT EXISTS circuit_events (
    event_id String,
    event_type LowCardinality(String),
    occurred_at DateTime64(6, 'UTC'),
    pool LowCardinality(String),
    model LowCardinality(String),
    worker String,
    reason String,
    failures UInt32,
    kafka_partition Int32,
    kafka_offset Int64
) ENGINE = ReplacingMergeTree
ORDER BY (pool, model, occurred_at, event_id)
"""

_QUANTILES = "AggregateFunction(quantiles(0.5, 0.95, 0.99), Float64)"

JOB_METRICS_1M = f"""
CREATE TABLE IF NOT EXISTS job_metrics_1m (
    tenant_id LowCardinality(String),
    pool LowCardinality(String),
    model LowCardinality(String),
    minute DateTime('UTC'),
    events SimpleAggregateFunction(sum, UInt64),
    submitted SimpleAggregateFunction(sum, UInt64),
    started SimpleAggregateFunction(sum, UInt64),
    succeeded SimpleAggregateFunction(sum, UInt64),
    failed SimpleAggregateFunction(sum, UInt64),
    attempt_failures SimpleAggregateFunction(sum, UInt64),
    dead_lettered SimpleAggregateFunction(sum, UInt64),
    cancelled SimpleAggregateFunction(sum, UInt64),
    retries SimpleAggregateFunction(sum, UInt64),
    rate_limited SimpleAggregateFunction(sum, UInt64),
    queue_ms_sum SimpleAggregateFunction(sum, Float64),
    queue_ms_q {_QUANTILES},
    processing_ms_q {_QUANTILES},
    latency_ms_q {_QUANTILES},
    total_ms_q {_QUANTILES},
    batch_size_sum SimpleAggregateFunction(sum, UInt64),
    batch_size_q {_QUANTILES}
) ENGINE = AggregatingMergeTree
ORDER BY (tenant_id, pool, model, minute)
"""


def _quantiles_of(column: str) -> str:
    return f"quantilesStateIf(0.5, 0.95, 0.99)(toFloat64(assumeNotNull({column})), isNotNull({column}))"


JOB_METRICS_1M_MV = f"""
CREATE MATERIALIZED VIEW IF NOT EXISTS job_metrics_1m_mv TO job_metrics_1m AS
SELECT
    tenant_id, pool, model,
    toStartOfMinute(occurred_at) AS minute,
    count() AS events,
    countIf(event_type = 'JobSubmitted') AS submitted,
    countIf(event_type = 'JobStarted') AS started,
    countIf(event_type = 'JobSucceeded') AS succeeded,
    countIf(event_type = 'JobFailed' AND terminal = 1) AS failed,
    countIf(event_type = 'JobFailed' AND terminal = 0) AS attempt_failures,
    countIf(event_type = 'JobDeadLettered') AS dead_lettered,
    countIf(event_type = 'JobCancelled') AS cancelled,
    countIf(event_type = 'JobRetryScheduled') AS retries,
    countIf(rate_limited = 1) AS rate_limited,
    sum(ifNull(queue_ms, 0)) AS queue_ms_sum,
    {_quantiles_of("queue_ms")} AS queue_ms_q,
    {_quantiles_of("processing_ms")} AS processing_ms_q,
    {_quantiles_of("latency_ms")} AS latency_ms_q,
    {_quantiles_of("total_ms")} AS total_ms_q,
    sum(ifNull(batch_size, 0)) AS batch_size_sum,
    {_quantiles_of("batch_size")} AS batch_size_q
FROM job_events
GROUP BY tenant_id, pool, model, minute
"""

#: Every statement of the first schema version, in the order they must run.
V1_STATEMENTS: tuple[str, ...] = (JOB_EVENTS, JOBS, CIRCUIT_EVENTS, JOB_METRICS_1M, JOB_METRICS_1M_MV)

#: The tables a rebuild writes and a verify compares, views excluded.
TABLES: tuple[str, ...] = ("job_events", "jobs", "circuit_events", "job_metrics_1m")
