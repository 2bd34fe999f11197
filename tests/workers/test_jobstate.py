"""Folding job events into the worker's view; the skip and callback decisions."""

from __future__ import annotations

from datetime import UTC, datetime

from schemas.records import (
    Envelope,
    JobCallbackAttempted,
    JobCancelRequested,
    JobDeadLettered,
    JobFailed,
    JobQueued,
    JobSpec,
    JobStarted,
    JobSubmitted,
    JobSucceeded,
    WorkItem,
)
from workers.jobstate import IGNORED_TYPES, JobView, fold, should_send_callback, skip_reason

NOW = datetime.now(UTC)


def env(seq: int = 1) -> Envelope:
    return Envelope(event_id=f"e{seq}", job_id="j1", tenant_id="t1", occurred_at=NOW, sequence=seq)


SPEC = JobSpec(job_id="j1", tenant_id="t1", payload_sha256="x", created_at=NOW, callback_url="http://cb")


def item(attempt: int) -> WorkItem:
    return WorkItem(spec=SPEC, attempt=attempt, pool="p", lane="batch", model="m",
                    dispatched_at=NOW, lease_ms=1000)


def run(*events: object) -> JobView | None:
    view: JobView | None = None
    for event in events:
        view = fold(view, event)
    return view


def test_lifecycle_fold() -> None:
    view = run(JobSubmitted(envelope=env(), spec=SPEC),
               JobQueued(envelope=env(2), pool="p", lane="batch", model="m", attempt=1),
               JobStarted(envelope=env(3), attempt=1, worker="w", lease_deadline=NOW, batch_id="b"))
    assert view == JobView(job_id="j1", tenant_id="t1", status="queued", attempt=1, pool="p",
                           callback_url="http://cb")
    assert skip_reason(view, item(1)) is None
    assert skip_reason(view, item(0)) is not None
    done = fold(view, JobSucceeded(envelope=env(4), attempt=1, model="m", latency_ms=1.0))
    assert done is not None and done.terminal
    assert skip_reason(done, item(1)) == "job already succeeded"
    assert JobView.from_json(done.to_json() | {"future_field": 1}) == done


def test_terminal_is_sticky_and_callback_once() -> None:
    failed = run(JobSubmitted(envelope=env(), spec=SPEC),
                 JobQueued(envelope=env(2), pool="p", lane="batch", model="m", attempt=1),
                 JobFailed(envelope=env(3), attempt=1, reason="r", error_class="permanent", terminal=True))
    assert failed is not None and failed.status == "failed"
    terminal = env(3).event_id
    assert should_send_callback(failed, terminal, my_pools=["p"], default_pool=None)
    assert not should_send_callback(failed, terminal, my_pools=["other"], default_pool=None)
    # The terminal event read again (a worker died mid-delivery) sends again: at-least-once
    assert fold(failed, JobFailed(envelope=env(3), attempt=1, reason="r", error_class="permanent",
                                  terminal=True)) == failed
    dead = env(4)
    after = fold(failed, JobDeadLettered(envelope=dead, attempts=1, reason="r"))
    assert after == failed
    assert not should_send_callback(failed, dead.event_id, my_pools=["p"], default_pool=None)
    acked = fold(failed, JobCallbackAttempted(envelope=env(5), callback_attempt=1, url="u", ok=True))
    assert acked is not None and acked.callback_done
    assert not should_send_callback(acked, terminal, my_pools=["p"], default_pool=None)


def test_cancel_request_skips_and_unknown_jobs_run() -> None:
    view = run(JobCancelRequested(envelope=env()))
    assert skip_reason(view, item(1)) == "cancel requested"
    assert skip_reason(None, item(1)) is None
    assert fold(None, object()) is None


NO_CALLBACK = JobSpec(job_id="j1", tenant_id="t1", payload_sha256="x", created_at=NOW)


def test_a_job_without_a_callback_has_no_view_until_something_decides() -> None:
    started = JobStarted(envelope=env(3), attempt=1, worker="w", lease_deadline=NOW, batch_id="b")
    assert run(JobSubmitted(envelope=env(), spec=NO_CALLBACK),
               JobQueued(envelope=env(2), pool="p", lane="batch", model="m", attempt=1), started) is None
    done = run(JobSubmitted(envelope=env(), spec=NO_CALLBACK),
               JobSucceeded(envelope=env(4), attempt=1, model="m", latency_ms=1.0))
    assert done is not None and skip_reason(done, item(1)) == "job already succeeded"
    assert not should_send_callback(done, "e4", my_pools=["p"], default_pool="p")
    second = run(JobQueued(envelope=env(5), pool="p", lane="batch", model="m", attempt=2))
    assert second is not None and skip_reason(second, item(1)) is not None
    assert skip_reason(second, item(2)) is None


def test_a_start_changes_no_view() -> None:
    queued = run(JobSubmitted(envelope=env(), spec=SPEC),
                 JobQueued(envelope=env(2), pool="p", lane="batch", model="m", attempt=1))
    started = JobStarted(envelope=env(3), attempt=1, worker="w", lease_deadline=NOW, batch_id="b")
    assert fold(queued, started) == queued
    assert JobStarted in IGNORED_TYPES
