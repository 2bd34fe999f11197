"""A job's public states and the classes of a failed attempt: one home for both vocabularies.

Every package that speaks of a job's status or of why an attempt failed imports these names,
so the worker, the processor, the projections, the API and its clients cannot disagree.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

Status = Literal["queued", "running", "succeeded", "failed", "cancelled"]
TERMINAL: frozenset[str] = frozenset({"succeeded", "failed", "cancelled"})


def is_terminal(status: str) -> bool:
    """Whether a job in ``status`` can no longer change."""
    return status in TERMINAL


class ErrorClass(StrEnum):
    """Why an attempt failed, as the worker reports it and the events carry it."""

    RATE_LIMITED = "rate_limited"  # the model service answered 429: slow down, not broken
    TRANSIENT = "transient"
    PERMANENT = "permanent"
    CIRCUIT_OPEN = "circuit_open"
    CANCELLED = "cancelled"
    SKIPPED = "skipped"
    DEADLINE = "deadline"

    @classmethod
    def of_reason(cls, reason: str) -> ErrorClass | None:
        """The class a processor reason (``"<class>: <message>"``) starts with, if any."""
        head = reason.removeprefix("max_attempts_exhausted: ").split(":", 1)[0]
        try:
            return cls(head)
        except ValueError:
            return None
