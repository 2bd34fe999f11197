"""The chaos run's ledger: what the event log, the emulator and the receiver say happened.

Everything here is pure: the run feeds it lifecycle events read from ``brigade.job-events``
(not the API's view of them), the emulator's count of answered inputs and the callback
receiver's verified deliveries, and the ledger folds them into per-job counts.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

from schemas import records as r

#: Events that decide a job's fate (``JobFailed`` only when it says it is terminal).
TERMINAL_KINDS = frozenset({"JobSucceeded", "JobFailed", "JobCancelled"})


@dataclass(frozen=True, slots=True)
class LoggedEvent:
    """The facts of one lifecycle event that the ledger counts."""

    job_id: str
    event_id: str
    sequence: int
    kind: str
    terminal: bool = False
    result_ref: str | None = None
    result_sha256: str | None = None


def logged_event(record: object) -> LoggedEvent | None:
    """The ledger's view of a decoded record; None for records without a job envelope."""
    envelope = getattr(record, "envelope", None)
    if not isinstance(envelope, r.Envelope):
        return None
    kind = type(record).__name__
    terminal = kind in TERMINAL_KINDS and (not isinstance(record, r.JobFailed) or record.terminal)
    succeeded = record if isinstance(record, r.JobSucceeded) else None
    return LoggedEvent(
        job_id=envelope.job_id, event_id=envelope.event_id, sequence=envelope.sequence, kind=kind,
        terminal=terminal,
        result_ref=succeeded.result_ref if succeeded else None,
        result_sha256=succeeded.result_sha256 if succeeded else None,
    )


@dataclass
class JobTally:
    """One job's events, by event id, and how many messages carried them."""

    events: dict[str, LoggedEvent] = field(default_factory=dict)
    messages: int = 0

    def terminal(self) -> list[LoggedEvent]:
        """The distinct terminal events, in sequence order."""
        return sorted((e for e in self.events.values() if e.terminal), key=lambda e: e.sequence)

    def successes(self) -> list[LoggedEvent]:
        """The distinct ``JobSucceeded`` events."""
        return [e for e in self.events.values() if e.kind == "JobSucceeded"]

    def conflicting_sequences(self) -> bool:
        """Whether two different events claim the same sequence number."""
        seen = Counter(e.sequence for e in self.events.values())
        return any(n > 1 for n in seen.values())

    def decided_twice(self) -> bool:
        """Whether the job was decided more than once: two terminal events, or two different
        events at one sequence."""
        return len(self.terminal()) > 1 or self.conflicting_sequences()

    def status(self) -> str | None:
        """The first decision's status (``succeeded``...), None while undecided."""
        decided = self.terminal()
        return decided[0].kind.removeprefix("Job").lower() if decided else None


class Ledger:
    """Per-job tallies folded from the event log; redelivered messages count once."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.jobs: dict[str, JobTally] = {}
        self.messages = 0
        self._clock = clock
        # When the tail first read an event of the job, and its first decision: the run's
        # slowest jobs are the ones a recovery path left waiting.
        self._first_read: dict[str, float] = {}
        self._decided_after: dict[str, float] = {}

    def add(self, event: LoggedEvent) -> None:
        """Fold one event (a second message with the same event id only counts as a message)."""
        tally = self.jobs.setdefault(event.job_id, JobTally())
        tally.messages += 1
        tally.events.setdefault(event.event_id, event)
        self.messages += 1
        now = self._clock()
        first = self._first_read.setdefault(event.job_id, now)
        if event.terminal and event.job_id not in self._decided_after:
            self._decided_after[event.job_id] = now - first

    def slowest(self, accepted: Collection[str], n: int) -> list[tuple[str, float]]:
        """The ``n`` accepted jobs that took longest from their first event to a decision."""
        wanted = set(accepted)
        decided = ((job, s) for job, s in self._decided_after.items() if job in wanted)
        return sorted(decided, key=lambda pair: pair[1], reverse=True)[:n]

    def is_terminal(self, job_id: str) -> bool:
        """Whether the log holds a decision for ``job_id``."""
        tally = self.jobs.get(job_id)
        return tally is not None and bool(tally.terminal())

    def undecided(self, accepted: Collection[str]) -> list[str]:
        """Accepted jobs without a terminal event yet."""
        return [job_id for job_id in accepted if not self.is_terminal(job_id)]


@dataclass(frozen=True, kw_only=True)
class Counts:
    """What the ledger concludes about the accepted jobs."""

    submitted: int
    terminal: int
    lost: int
    decided_twice: int
    duplicate_results: int
    results_missing: int
    unknown_jobs: int
    redelivered_events: int
    statuses: dict[str, int]


def count(ledger: Ledger, accepted: Collection[str], *, result_ok: Callable[[LoggedEvent], bool]) -> Counts:
    """Fold the ledger against the jobs the API accepted.

    ``result_ok`` says whether a success's result is in the result store as the event
    describes it (the run reads the store; tests pass a stand-in).
    """
    wanted = set(accepted)
    tallies = [ledger.jobs[j] for j in wanted if j in ledger.jobs]
    decided = [t for t in tallies if t.terminal()]
    statuses = Counter(t.status() or "" for t in decided)
    first_successes = [t.successes()[0] for t in decided if t.successes()]
    return Counts(
        submitted=len(wanted),
        terminal=len(decided),
        lost=len(wanted) - len(decided),
        decided_twice=sum(t.decided_twice() for t in tallies),
        duplicate_results=sum(len(t.successes()) > 1 for t in tallies),
        results_missing=sum(not result_ok(e) for e in first_successes),
        unknown_jobs=len(set(ledger.jobs) - wanted),
        redelivered_events=sum(t.messages - len(t.events) for t in tallies),
        statuses=dict(sorted(statuses.items())),
    )


def decided_twice_jobs(ledger: Ledger, accepted: Collection[str]) -> list[str]:
    """The accepted jobs ``count`` counts as decided twice, sorted (to trace them)."""
    return sorted(
        job_id for job_id in set(accepted)
        if (tally := ledger.jobs.get(job_id)) is not None and tally.decided_twice()
    )


def duplicate_model_calls_pct(served: Mapping[str, int]) -> float:
    """Model answers for inputs it had already answered, as a percentage of distinct inputs.

    Retries after a 429, a 5xx or a timeout are not counted (the emulator did not answer
    them); what is counted is work done twice, such as a batch redelivered after a crash.
    """
    distinct = sum(1 for n in served.values() if n > 0)
    again = sum(n - 1 for n in served.values() if n > 1)
    return round(100.0 * again / distinct, 3) if distinct else 0.0


def callbacks_missing(ledger: Ledger, with_callback: Collection[str], delivered: Collection[str]) -> int:
    """Decided jobs with a callback URL whose receiver never got a verified delivery."""
    got = set(delivered)
    return sum(1 for job_id in with_callback if ledger.is_terminal(job_id) and job_id not in got)


def clean(report: Mapping[str, Any]) -> bool:
    """Whether a run's report shows nothing lost, doubled, missing or unequal."""
    zero = ("lost", "decided_twice", "duplicate_results", "results_missing", "callbacks_missing",
            "callbacks_unverified")
    return all(report.get(name, 0) == 0 for name in zero) and report.get("replay_equals_live") is True
