"""The batching policy: pure, clock-free, tested without Kafka.

A lane's open batch closes when it reaches the lane's ``max_batch_size``, when the next
item would push it past its token (or byte) budget, or when its oldest item has waited
``max_delay``: the hybrid rule. Because the window is measured from the *oldest* item,
no item ever waits longer than its lane's max delay before its batch is handed to the
executor, whatever arrives after it. The caller passes the time in; nothing here reads
a clock or touches Kafka, so the agent stays a thin shell around ``Batcher``.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Generic, Literal, TypeVar

from brigade.settings import LaneSettings

T = TypeVar("T")
CloseReason = Literal["size", "tokens", "bytes", "time", "idle", "drain"]

# A rough, tokenizer-free estimate: English text averages ~4 characters per token.
CHARS_PER_TOKEN = 4


@dataclass(frozen=True, kw_only=True)
class BatchPolicy:
    """When a lane's batch closes.

    ``max_delay_s`` bounds how long the oldest item of a batch waits; ``token_budget`` and
    ``byte_budget`` bound the batch's summed cost (an item larger than a budget on its own
    still runs, alone). ``close_when_idle`` lets the driver close a batch at once when none
    of the lane's batches is running or waiting (see ``workers.lanes``).
    """

    max_size: int
    max_delay_s: float
    token_budget: int
    byte_budget: int | None = None
    close_when_idle: bool = False

    def __post_init__(self) -> None:
        if self.max_size < 1:
            raise ValueError("max_size must be at least 1")
        if self.max_delay_s < 0:
            raise ValueError("max_delay_s must not be negative")
        if self.token_budget < 1:
            raise ValueError("token_budget must be at least 1")

    @classmethod
    def from_lane(cls, lane: LaneSettings, *, byte_budget: int | None = None) -> BatchPolicy:
        """The policy a lane's settings describe."""
        return cls(
            max_size=lane.max_batch_size,
            max_delay_s=lane.max_delay_ms / 1000.0,
            token_budget=lane.token_budget,
            byte_budget=byte_budget,
            close_when_idle=lane.close_when_idle,
        )


@dataclass(frozen=True, slots=True)
class Batch(Generic[T]):
    """A closed batch: its items in arrival order and why it closed."""

    items: tuple[T, ...]
    reason: CloseReason
    tokens: int
    size_bytes: int
    opened_at: float

    def __len__(self) -> int:
        return len(self.items)


@dataclass(slots=True)
class _Open(Generic[T]):
    items: list[T] = field(default_factory=list)
    tokens: int = 0
    size_bytes: int = 0
    opened_at: float = 0.0

    def close(self, reason: CloseReason) -> Batch[T]:
        return Batch(tuple(self.items), reason, self.tokens, self.size_bytes, self.opened_at)


class Batcher(Generic[T]):
    """Groups items into batches under a ``BatchPolicy``; the caller supplies the time.

    ``add`` returns the batches that the new item closed; ``due`` returns the batch whose
    window has elapsed; ``deadline`` says when that will happen, so the driver knows how
    long it may sleep.
    """

    def __init__(self, policy: BatchPolicy) -> None:
        self.policy = policy
        self._open: _Open[T] = _Open()

    def __len__(self) -> int:
        return len(self._open.items)

    def add(self, item: T, *, tokens: int, size_bytes: int, now: float) -> list[Batch[T]]:
        """Add ``item`` (arriving at ``now``); return the batches that closed because of it."""
        closed: list[Batch[T]] = []
        over = self._over_budget(tokens, size_bytes)
        if over is not None and self._open.items:
            closed.append(self._take(over))
        if not self._open.items:
            self._open.opened_at = now
        self._open.items.append(item)
        self._open.tokens += tokens
        self._open.size_bytes += size_bytes
        full = self._full()
        if full is not None:
            closed.append(self._take(full))
        return closed

    def due(self, now: float) -> list[Batch[T]]:
        """The open batch, closed, if its oldest item has waited the lane's max delay."""
        deadline = self.deadline()
        if deadline is None or now < deadline:
            return []
        return [self._take("time")]

    def deadline(self) -> float | None:
        """When the open batch's window elapses; ``None`` when nothing waits."""
        if not self._open.items:
            return None
        return self._open.opened_at + self.policy.max_delay_s

    def drain(self, reason: CloseReason = "drain") -> list[Batch[T]]:
        """Close whatever is open (shutdown, rebalance, or an idle lane), as ``reason``."""
        return [self._take(reason)] if self._open.items else []

    def _over_budget(self, tokens: int, size_bytes: int) -> CloseReason | None:
        if self._open.tokens + tokens > self.policy.token_budget:
            return "tokens"
        budget = self.policy.byte_budget
        if budget is not None and self._open.size_bytes + size_bytes > budget:
            return "bytes"
        return None

    def _full(self) -> CloseReason | None:
        if len(self._open.items) >= self.policy.max_size:
            return "size"
        if self._open.tokens >= self.policy.token_budget:
            return "tokens"
        budget = self.policy.byte_budget
        if budget is not None and self._open.size_bytes >= budget:
            return "bytes"
        return None

    def _take(self, reason: CloseReason) -> Batch[T]:
        batch = self._open.close(reason)
        self._open = _Open()
        return batch


def estimate_tokens(input_text: str | None, *, payload_size: int = 0) -> int:
    """A cheap token estimate of a job's input, used only for batch budgets.

    Inline input is JSON text: a string for embeddings, ``{"messages": [...]}`` for chat.
    Referenced payloads are estimated from their stored size.
    """
    if input_text is None:
        return max(1, math.ceil(payload_size / CHARS_PER_TOKEN))
    try:
        value = json.loads(input_text)
    except ValueError:
        return max(1, math.ceil(len(input_text) / CHARS_PER_TOKEN))
    return max(1, math.ceil(_text_length(value) / CHARS_PER_TOKEN))


def _text_length(value: object) -> int:
    if isinstance(value, str):
        return len(value)
    if isinstance(value, list):
        return sum(_text_length(v) for v in value)
    if isinstance(value, dict):
        return sum(_text_length(v) for v in value.values())
    return len(str(value))
