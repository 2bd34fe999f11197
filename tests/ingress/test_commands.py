"""The payload's canonical text, written field by field, is exactly the generic encoder's."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from hypothesis import given
from hypothesis import strategies as st

from brigade.ids import canonical_json
from ingress.commands import input_text, payload_of, payload_text
from ingress.models import JobRequest

_TEXT = st.text(max_size=40)  # every code point: escapes, quotes, control and non-ASCII characters
_ZONES = st.sampled_from([UTC, timezone(timedelta(hours=5, minutes=30)), timezone(timedelta(hours=-8))])
_CHAT = st.fixed_dictionaries(
    {"messages": st.lists(st.fixed_dictionaries({"role": st.text(min_size=1, max_size=8), "content": _TEXT}),
                          min_size=1, max_size=3)},
    optional={"temperature": st.floats(allow_nan=False, allow_infinity=False)},
)
_REQUEST = st.fixed_dictionaries(
    {},
    optional={
        "modelHint": st.text(min_size=1, max_size=20),
        "priority": st.sampled_from(["interactive", "batch"]),
        "batchable": st.booleans(),
        "longContext": st.booleans(),
        "maxAttempts": st.integers(min_value=1, max_value=100),
        "deadline": st.datetimes(timezones=_ZONES),
        "callbackUrl": st.text(min_size=1, max_size=30),
        "metadata": st.dictionaries(st.text(min_size=1, max_size=10), _TEXT, max_size=4),
        "idempotencyKey": st.text(min_size=1, max_size=10),
    },
)


_PAYLOAD = st.one_of(
    _TEXT.map(lambda t: {"input": t}),
    _CHAT.map(lambda c: {"input": c}),
    st.text(min_size=1, max_size=30).map(lambda r: {"payloadRef": r}),
)


@given(fields=_REQUEST, payload=_PAYLOAD, attempts=st.integers(min_value=1, max_value=100))
def test_payload_text_is_the_canonical_json_of_the_payload(
    fields: dict[str, object], payload: dict[str, object], attempts: int
) -> None:
    request = JobRequest.model_validate({**fields, **payload})
    text = input_text(request)
    expected = canonical_json(payload_of(request, max_attempts=attempts, text=text))
    assert payload_text(request, max_attempts=attempts, text=text) == expected


def test_a_known_payload_keeps_its_text() -> None:
    # Job ids already on the log hash this text: it must never change for the same request.
    deadline = datetime(2030, 1, 1, tzinfo=UTC)
    request = JobRequest.model_validate({"input": "héllo \"x\"", "deadline": deadline})
    assert payload_text(request, max_attempts=3, text=input_text(request)) == (
        '{"batchable":true,"callbackUrl":null,"deadline":"2030-01-01T00:00:00+00:00",'
        '"input":"\\"héllo \\\\\\"x\\\\\\"\\"","longContext":false,"maxAttempts":3,"metadata":{},'
        '"modelHint":null,"payloadRef":null,"priority":"batch"}'
    )
