"""The ``?wait`` tail decodes only the records that can end a job."""

from __future__ import annotations

import io
from typing import Any

import pytest
from fastavro import schemaless_reader, schemaless_writer
from fastavro.utils import generate_many

from ingress.waiters import MAYBE_TERMINAL, terminal_of
from schemas.codec import _shape
from schemas.records import RECORD_TYPES
from schemas.registry import default_registry


def _samples(name: str, count: int) -> list[Any]:
    # generate_many yields raw longs for timestamps; a write/read pass applies logical types.
    schema = default_registry().latest(name).parsed
    records = []
    for data in generate_many(schema, count):
        buffer = io.BytesIO()
        schemaless_writer(buffer, schema, data)
        buffer.seek(0)
        body = schemaless_reader(buffer, schema, None)
        assert isinstance(body, dict)
        records.append(_shape(RECORD_TYPES[name]).from_avro(body))
    return records


@pytest.mark.parametrize("name", sorted(RECORD_TYPES))
def test_every_record_that_ends_a_job_is_decoded_by_the_tail(name: str) -> None:
    # Random records of every type (JobFailed with both values of its terminal flag)
    ending = [record for record in _samples(name, 40) if terminal_of(record) is not None]
    # Then a type the tail skips unread never ends a job
    if RECORD_TYPES[name] not in MAYBE_TERMINAL:
        assert ending == []
    else:
        assert ending, f"{name} never ends a job: it need not be decoded"
