"""Codec speed: encode + decode of a typical JobSucceeded event, events per second.

Peer baseline in the same run: fastavro's schemaless writer/reader on the same record as a
plain dict (the floor Brigade's typed records and single-object header add to).

    .venv/bin/python -m bench.bench_codec
"""

from __future__ import annotations

import io
import time
from datetime import UTC, datetime

from fastavro import schemaless_reader, schemaless_writer

from bench.report import emit
from schemas.codec import Codec, _shape
from schemas.records import Envelope, JobSucceeded
from schemas.registry import default_registry


def typical_succeeded() -> JobSucceeded:
    """A JobSucceeded as the processor writes it for an inline 384-d embedding reference."""
    return JobSucceeded(
        envelope=Envelope(
            event_id="0b6f7c1e-3d1a-5f60-9a43-1f9c8d2e7b11",
            job_id="6a1f2b7e-4c3d-5e8f-9a0b-1c2d3e4f5a6b",
            tenant_id="acme",
            occurred_at=datetime.now(UTC),
            sequence=4,
            traceparent="00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ),
        attempt=1,
        model="all-MiniLM-L6-v2",
        latency_ms=12.5,
        result_ref="file:///var/brigade/results/6a1f2b7e.json",
        result_size=8123,
        result_sha256="9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
        batch_size=32,
        queue_ms=3.1,
    )


def codec_events_per_second(n: int) -> float:
    """Brigade codec: typed record → single-object bytes → typed record."""
    codec = Codec()
    event = typical_succeeded()
    start = time.perf_counter()
    for _ in range(n):
        codec.decode(codec.encode(event))
    return n / (time.perf_counter() - start)


def fastavro_events_per_second(n: int) -> float:
    """Peer: fastavro schemaless write/read of the same record as a dict, no header."""
    schema = default_registry().latest("brigade.events.JobSucceeded").parsed
    record = _shape(JobSucceeded).to_avro(typical_succeeded())
    start = time.perf_counter()
    for _ in range(n):
        buffer = io.BytesIO()
        schemaless_writer(buffer, schema, record)
        buffer.seek(0)
        schemaless_reader(buffer, schema, None)
    return n / (time.perf_counter() - start)


def main(n: int = 50_000) -> None:
    """Run both and report the ratio."""
    ours = codec_events_per_second(n)
    peer = fastavro_events_per_second(n)
    size = len(Codec().encode(typical_succeeded()))
    emit("codec", "Codec: JobSucceeded encode+decode", [
        {"implementation": "brigade Codec (typed, single-object)", "events_per_s": ours, "bytes": size},
        {"implementation": "fastavro dict (peer)", "events_per_s": peer, "bytes": size - 10},
    ], extra={"ratio_vs_fastavro": ours / peer})


if __name__ == "__main__":
    main()
