"""The read side's fold agrees with the processor's state machine and measures events."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from brigade.errors import Skip
from processors.lifecycle import fold
from projections.fold import advance, fold_events, track
from projections.simulate import PATHS, job_events, stream
from schemas.records import JobSubmitted
from tests.projections.test_queries import START


@given(path=st.sampled_from(PATHS), seed=st.integers(0, 1000))
@settings(max_examples=50, deadline=None)
def test_fold_equals_the_processors_fold(path: str, seed: int) -> None:
    events = job_events("j1", tenant_id="t", pool="p", model="m", path=path, start=START, seed=seed)  # type: ignore[arg-type]
    tracked = fold_events(events)
    assert tracked is not None
    assert tracked.job == fold(events)
    assert tracked.last_event == type(events[-1]).__name__


def test_a_redelivered_event_is_skipped() -> None:
    events = stream(1, paths=("succeeded",))
    tracked, _ = advance(None, events[0])
    tracked, _ = advance(tracked, events[1])
    with pytest.raises(Skip):
        advance(tracked, events[0])


def test_measures_of_a_successful_job() -> None:
    events = stream(1, paths=("succeeded",))
    tracked = None
    measures = []
    for event in events:
        tracked, m = advance(tracked, event)
        measures.append(m)
    submitted, queued, started, succeeded = events
    assert isinstance(submitted, JobSubmitted)
    assert measures[2].queue_ms == pytest.approx(
        (started.envelope.occurred_at - queued.envelope.occurred_at).total_seconds() * 1000)
    assert measures[3].processing_ms == pytest.approx(
        (succeeded.envelope.occurred_at - started.envelope.occurred_at).total_seconds() * 1000)
    assert measures[3].total_ms == pytest.approx(
        (succeeded.envelope.occurred_at - submitted.spec.created_at).total_seconds() * 1000)
    assert measures[3].latency_ms == succeeded.latency_ms  # type: ignore[union-attr]


def test_a_rate_limited_retry_counts_one_429() -> None:
    events = job_events("j", tenant_id="t", pool="p", model="m", path="rate_limited", start=START)
    tracked = None
    limited = 0
    for event in events:
        tracked, m = advance(tracked, event)
        limited += m.rate_limited
    assert limited == 1


@given(path=st.sampled_from(PATHS), seed=st.integers(0, 1000))
@settings(max_examples=30, deadline=None)
def test_track_is_advance_without_measures(path: str, seed: int) -> None:
    events = job_events("j1", tenant_id="t", pool="p", model="m", path=path, start=START, seed=seed)  # type: ignore[arg-type]
    tracked = advanced = owned = None
    for event in events:
        tracked = track(tracked, event)
        owned = track(owned, event, owned=True)
        advanced, _ = advance(advanced, event)
        assert tracked == advanced == owned
