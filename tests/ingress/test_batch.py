"""``POST /v1/jobs:batch``: per-item answers, commands any Avro reader can decode, the answer's JSON."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from fastavro import parse_schema, schemaless_reader
from fastavro.schema import fingerprint, to_parsing_canonical_form
from hypothesis import given
from hypothesis import strategies as st

from ingress.batch import _Item, answer_json
from ingress.models import BatchAccepted, BatchItemResult, ErrorDetail
from tests.ingress.conftest import Api
from tests.ingress.support import read_topic

SUBMIT_AVSC = Path(__file__).parents[2] / "schemas" / "avro" / "brigade.commands.SubmitJob.v1.avsc"


def _reference_reader() -> tuple[bytes, Any]:
    """The header and parsed schema straight from the .avsc, with fastavro only (not Brigade's codec)."""
    schema = parse_schema(json.loads(SUBMIT_AVSC.read_text()))
    header = b"\xc3\x01" + bytes.fromhex(fingerprint(to_parsing_canonical_form(schema), "CRC-64-AVRO"))
    return header, schema


def _decode(raw: bytes, header: bytes, schema: Any) -> dict[str, Any]:
    assert raw[:10] == header
    body = io.BytesIO(raw[10:])
    record = schemaless_reader(body, schema, None)
    assert body.tell() == len(raw) - 10, "every byte of the body is read"
    assert isinstance(record, dict)
    return record


def _mixed_batch(limit: int) -> list[dict[str, Any]]:
    deadline = datetime.now(UTC) + timedelta(hours=1)
    valid = [{"input": f"item {i} ✓ \"quoted\""} for i in range(200)]
    return [
        *valid[:100],
        {"priority": "urgent", "input": "x"},  # 100: not a priority
        {"input": {"messages": [{"role": "user", "content": "hi"}]}, "modelHint": "chat",
         "metadata": {"team": "ünïcode"}, "deadline": deadline.isoformat(), "priority": "interactive"},
        {"input": "over the limit", "maxAttempts": limit + 1},  # 102: a deployment limit, not the schema
        {},  # 103: neither input nor payloadRef
        {"input": "late", "deadline": (datetime.now(UTC) - timedelta(hours=1)).isoformat()},  # 104: past
        valid[0],  # 105: the same payload as item 0: the same job
        *valid[100:],
    ]


def test_a_mixed_batch_answers_per_item_and_its_commands_decode_with_the_reference_reader(api: Api) -> None:
    jobs = _mixed_batch(api.settings.retry.max_attempts_limit)
    with api.client() as http:
        response = http.post("/v1/jobs:batch", json={"jobs": jobs})
    assert response.status_code == 200, response.text
    body = response.json()
    statuses = [item["status"] for item in body["results"]]
    assert statuses == [202] * 100 + [422, 202, 422, 422, 422, 200] + [202] * 100
    assert [item["index"] for item in body["results"]] == list(range(len(jobs)))
    assert body["accepted"] == 202 and body["rejected"] == 4
    for index in (100, 102, 103, 104):
        error = body["results"][index]["error"]
        assert error["code"] == "validation_error" and "jobId" not in body["results"][index]
    assert body["results"][105] == {**body["results"][0], "index": 105, "status": 200, "duplicate": True}

    header, schema = _reference_reader()
    topic = f"{api.settings.kafka.topic_prefix}.commands"
    commands = [_decode(raw, header, schema) for raw in read_topic(api.settings, topic, decode=bytes)]
    by_job = {command["spec"]["jobId"]: command for command in commands}
    accepted = [(i, item) for i, item in enumerate(body["results"]) if item["status"] == 202]
    assert len(commands) == len(accepted) == len(by_job), "one command per new job, nothing else"
    for index, item in accepted:
        spec = by_job[item["jobId"]]["spec"]
        assert spec["tenantId"] == "acme" and json.loads(spec["input"]) == jobs[index]["input"]
        assert spec["createdAt"].tzinfo is not None and spec["maxAttempts"] >= 1
    chat = by_job[body["results"][101]["jobId"]]["spec"]
    assert chat["priority"] == "interactive" and chat["modelHint"] == "chat"
    assert chat["metadata"] == {"team": "ünïcode"}
    assert chat["deadline"] == datetime.fromisoformat(jobs[101]["deadline"])


_ERRORS = st.builds(
    ErrorDetail, code=st.sampled_from(["validation_error", "idempotency_conflict", "overloaded"]),
    message=st.text(max_size=20), jobId=st.none() | st.uuids().map(str),
)
_ITEMS = st.lists(
    st.tuples(
        st.sampled_from([200, 202, 409, 422, 503]),
        st.none() | st.uuids().map(str),
        st.booleans(),
        st.booleans(),
    ),
    min_size=1, max_size=8,
)


@given(items=_ITEMS, error=_ERRORS, base=st.text(max_size=30))
def test_the_written_answer_is_the_models_json(
    items: list[tuple[int, str | None, bool, bool]], error: ErrorDetail, base: str
) -> None:
    # Any base URL (quotes, control and non-ASCII characters) and any mix of answers.
    batch = []
    for index, (status, job_id, duplicate, failed) in enumerate(items):
        item = _Item(index)
        item.answer(status, job_id, duplicate=duplicate)
        item.error = error if failed or status not in (200, 202) else None
        batch.append(item)
    results = [
        BatchItemResult(
            index=i.index, status=i.status, jobId=i.job_id, duplicate=i.duplicate, error=i.error,
            statusUrl=base + i.job_id if i.job_id is not None and i.status in (200, 202) else None,
        )
        for i in batch
    ]
    accepted = sum(1 for r in results if r.status in (200, 202))
    model = BatchAccepted(accepted=accepted, rejected=len(results) - accepted, results=results)
    assert answer_json(batch, base) == model.model_dump_json(exclude_none=True)
