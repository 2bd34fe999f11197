"""Codec speed on a typical JobSucceeded event: encode + decode, and decode alone, per second.

Peer baseline in the same run: fastavro's schemaless writer/reader on the same record as a
plain dict, with the schema parsed once by ``fastavro.parse_schema`` as fastavro documents
(the floor that Brigade's typed records and single-object header add to). The machine
may be shared and noisy: compare the ratios, not the absolute rates.

    .venv/bin/python -m bench.bench_codec
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable
from datetime import UTC, datetime

from fastavro import parse_schema, schemaless_reader, schemaless_writer

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


def _rate(n: int, step: Callable[[], object], rounds: int = 3) -> float:
    """Best of ``rounds`` runs of ``n`` steps, per second of process CPU time."""
    best = float("inf")
    for _ in range(rounds):
        start = time.process_time()
        for _ in range(n):
            step()
        best = min(best, time.process_time() - start)
    return n / best


def codec_rates(n: int) -> tuple[float, float]:
    """Brigade codec: (encode + decode, decode alone) per second."""
    codec = Codec()
    event = typical_succeeded()
    data = codec.encode(event)
    return _rate(n, lambda: codec.decode(codec.encode(event))), _rate(n, lambda: codec.decode(data))


def fastavro_rates(n: int) -> tuple[float, float]:
    """Peer: fastavro schemaless write/read of the same record as a dict, no header."""
    schema = parse_schema(default_registry().latest("brigade.events.JobSucceeded").raw)
    record = _shape(JobSucceeded).to_avro(typical_succeeded())

    def round_trip() -> object:
        buffer = io.BytesIO()
        schemaless_writer(buffer, schema, record)
        buffer.seek(0)
        return schemaless_reader(buffer, schema, None)

    buffer = io.BytesIO()
    schemaless_writer(buffer, schema, record)
    body = buffer.getvalue()
    return _rate(n, round_trip), _rate(n, lambda: schemaless_reader(io.BytesIO(body), schema, None))


def main(n: int = 50_000) -> None:
    """Run both and report the ratios."""
    ours, ours_decode = codec_rates(n)
    peer, peer_decode = fastavro_rates(n)
    size = len(Codec().encode(typical_succeeded()))
    emit("codec", "Codec: JobSucceeded", [
        {"implementation": "brigade Codec (typed, single-object)", "events_per_s": ours,
         "decode_per_s": ours_decode, "bytes": size},
        {"implementation": "fastavro dict (peer)", "events_per_s": peer, "decode_per_s": peer_decode,
         "bytes": size - 10},
    ], extra={"ratio_vs_fastavro": ours / peer, "decode_ratio_vs_fastavro": ours_decode / peer_decode})


if __name__ == "__main__":
    main()
