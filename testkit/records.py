"""Random Brigade records of any Avro type, for round-trip and byte-for-byte tests."""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import Any

from fastavro import schemaless_reader, schemaless_writer
from fastavro.utils import generate_many

from schemas.codec import _shape
from schemas.records import RECORD_TYPES
from schemas.registry import default_registry


def generated_records(name: str, count: int) -> Iterator[Any]:
    """``count`` random records of the top-level Avro type ``name``, as Brigade's classes.

    Values come from fastavro's generator over the newest schema of ``name``.
    """
    schema = default_registry().latest(name).parsed
    for data in generate_many(schema, count):
        # generate_many yields raw longs for timestamps; a write/read pass applies logical types.
        buffer = io.BytesIO()
        schemaless_writer(buffer, schema, data)
        buffer.seek(0)
        body = schemaless_reader(buffer, schema, None)
        assert isinstance(body, dict)
        yield _shape(RECORD_TYPES[name]).from_avro(body)
