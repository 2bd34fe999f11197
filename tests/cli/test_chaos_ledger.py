"""The chaos ledger folds events into per-job counts: redelivery is not duplication."""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st

from cli.chaos.ledger import (
    Ledger,
    LoggedEvent,
    callbacks_missing,
    clean,
    count,
    decided_twice_jobs,
    duplicate_model_calls_pct,
    logged_event,
)
from schemas import records as r


def _event(job: str, seq: int, kind: str = "JobQueued", *, terminal: bool = False,
           eid: str = "") -> LoggedEvent:
    return LoggedEvent(job_id=job, event_id=eid or f"{job}:{seq}:{kind}", sequence=seq, kind=kind,
                       terminal=terminal)


def _life(job: str, end: str = "JobSucceeded") -> list[LoggedEvent]:
    return [_event(job, 1, "JobSubmitted"), _event(job, 2, "JobQueued"), _event(job, 3, end, terminal=True)]


def _all_ok(_: LoggedEvent) -> bool:
    return True


job_ids = st.lists(st.uuids().map(str), min_size=1, max_size=20, unique=True)


@given(job_ids, st.data())
def test_redelivered_messages_never_count_as_decisions(jobs: list[str], data: st.DataObject) -> None:
    # Given every job's life delivered once or several times, in any interleaving
    messages = [e for job in jobs for e in _life(job) for _ in range(data.draw(st.integers(1, 3)))]
    ledger = Ledger()
    for event in data.draw(st.permutations(messages)):
        ledger.add(event)
    counts = count(ledger, jobs, result_ok=_all_ok)
    # Then each job is decided exactly once
    assert (counts.terminal, counts.lost) == (len(jobs), 0)
    assert (counts.decided_twice, counts.duplicate_results) == (0, 0)
    assert counts.redelivered_events == len(messages) - 3 * len(jobs)


@given(job_ids, st.integers(0, 19))
def test_a_job_without_a_decision_is_lost(jobs: list[str], cut: int) -> None:
    ledger = Ledger()
    undecided = jobs[: cut % len(jobs)]
    for job in jobs:
        for event in _life(job)[: 2 if job in undecided else 3]:
            ledger.add(event)
    counts = count(ledger, jobs, result_ok=_all_ok)
    assert counts.lost == len(undecided) == len(ledger.undecided(jobs))
    assert counts.terminal == len(jobs) - len(undecided)


def test_two_decisions_or_two_events_at_one_sequence_are_decided_twice() -> None:
    ledger = Ledger()
    for event in [*_life("a"), _event("a", 4, "JobFailed", terminal=True),
                  *_life("b"), _event("b", 3, "JobQueued", eid="other-event-at-3"),
                  *_life("c")]:
        ledger.add(event)
    counts = count(ledger, ["a", "b", "c"], result_ok=_all_ok)
    assert counts.decided_twice == 2
    assert decided_twice_jobs(ledger, ["a", "b", "c"]) == ["a", "b"]  # named, to be traced
    assert counts.statuses == {"succeeded": 3}


def test_two_successes_are_duplicate_results_and_missing_results_are_counted() -> None:
    ledger = Ledger()
    for event in [*_life("a"), _event("a", 5, "JobSucceeded", terminal=True), *_life("b")]:
        ledger.add(event)
    counts = count(ledger, ["a", "b"], result_ok=lambda e: e.job_id != "b")
    assert (counts.duplicate_results, counts.results_missing) == (1, 1)


def test_jobs_nobody_submitted_are_reported_apart() -> None:
    ledger = Ledger()
    for event in _life("stranger"):
        ledger.add(event)
    assert count(ledger, [], result_ok=_all_ok).unknown_jobs == 1


@given(st.dictionaries(st.text(min_size=1), st.integers(0, 5)))
def test_duplicate_model_calls_count_only_repeated_answers(served: dict[str, int]) -> None:
    pct = duplicate_model_calls_pct(served)
    answered = [n for n in served.values() if n > 0]
    assert pct >= 0
    assert (pct == 0) == all(n == 1 for n in answered)


def test_duplicate_model_calls_pct_example() -> None:
    assert duplicate_model_calls_pct({"a": 1, "b": 2, "c": 1, "d": 0}) == 33.333


def test_callbacks_missing_counts_decided_jobs_without_a_verified_delivery() -> None:
    ledger = Ledger()
    for event in [*_life("a"), *_life("b"), *_life("c")[:2]]:
        ledger.add(event)
    # c is undecided: its callback is not due yet, so it is lost, not a missing callback
    assert callbacks_missing(ledger, ["a", "b", "c"], delivered=["a"]) == 1


def test_logged_event_reads_terminal_only_from_a_terminal_failure() -> None:
    envelope = r.Envelope(event_id="e1", job_id="j", tenant_id="t", occurred_at=datetime.now(UTC), sequence=4)
    retrying = r.JobFailed(envelope=envelope, attempt=1, reason="x", error_class="transient", terminal=False)
    final = r.JobFailed(envelope=envelope, attempt=3, reason="x", error_class="transient", terminal=True)
    assert logged_event(retrying) == LoggedEvent("j", "e1", 4, "JobFailed", terminal=False)
    assert logged_event(final) is not None and logged_event(final).terminal  # type: ignore[union-attr]
    assert logged_event(object()) is None


def test_clean_needs_every_count_zero_and_replay_equal() -> None:
    report = {"lost": 0, "decided_twice": 0, "duplicate_results": 0, "callbacks_missing": 0,
              "replay_equals_live": True}
    assert clean(report)
    assert not clean({**report, "lost": 1})
    assert not clean({**report, "replay_equals_live": False})


def test_the_slowest_jobs_are_those_decided_longest_after_their_first_event() -> None:
    # Given jobs whose events arrive at known times, one decided 40 s after its first event
    now = [0.0]
    ledger = Ledger(clock=lambda: now[0])
    quick, slow, undecided = _life("quick"), _life("slow"), _life("undecided")[:2]
    for at, event in [(0, slow[0]), (1, quick[0]), (1, slow[1]), (2, quick[1]), (2, quick[2]),
                      (3, undecided[0]), (40, slow[2]), (45, undecided[1]), (46, quick[2])]:
        now[0] = float(at)
        ledger.add(event)
    # Then they are listed slowest first, timed by their first decision, undecided ones left out
    assert ledger.slowest(["quick", "slow", "undecided"], 5) == [("slow", 40.0), ("quick", 1.0)]
    assert ledger.slowest(["quick"], 5) == [("quick", 1.0)]
