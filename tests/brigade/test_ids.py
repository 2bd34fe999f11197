"""Deterministic ids: the fast uuid5 is the standard library's, character for character."""

from __future__ import annotations

import json
import uuid

from hypothesis import given
from hypothesis import strategies as st

from brigade.ids import EVENT_NAMESPACE, JOB_NAMESPACE, canonical_json, event_id, job_id, uuid5_text

_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)


@given(name=st.text(), namespace=st.uuids())
def test_uuid5_text_is_the_standard_librarys(name: str, namespace: uuid.UUID) -> None:
    assert uuid5_text(namespace, name) == str(uuid.uuid5(namespace, name))


@given(tenant=st.text(), key=st.text(min_size=1), transition=st.text(), attempt=st.integers())
def test_ids_keep_their_definition(tenant: str, key: str, transition: str, attempt: int) -> None:
    # Ids already on the log must be derived the same way forever, or idempotency breaks.
    assert job_id(tenant, key, "h") == str(uuid.uuid5(JOB_NAMESPACE, f"{tenant}:{key}"))
    assert job_id(tenant, None, key) == str(uuid.uuid5(JOB_NAMESPACE, f"{tenant}:{key}"))
    expected = str(uuid.uuid5(EVENT_NAMESPACE, f"{key}:{transition}:{attempt}:d"))
    assert event_id(key, transition, attempt, "d") == expected


@given(value=_JSON)
def test_canonical_json_is_unchanged(value: object) -> None:
    expected = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert canonical_json(value) == expected
