"""Brigade's exception tree.

One root, `BrigadeError`, with a subtree per subsystem. Foreign exceptions are wrapped
with ``raise ... from exc`` so the cause survives. Control flow ("retry later", "skip
this event") has its own classes that are never logged as failures.
"""

from __future__ import annotations


class BrigadeError(Exception):
    """Root of every error Brigade raises on purpose."""


class ConfigError(BrigadeError):
    """A setting is missing or invalid; raised at start-up, naming the setting."""


class SchemaError(BrigadeError):
    """The event contract was violated (unknown schema, incompatible change, bad record)."""


class DecodeError(SchemaError):
    """Bytes that cannot be decoded as a Brigade event.

    Carries the raw bytes and a reason so the message can be dead-lettered intact.
    """

    def __init__(self, reason: str, *, raw: bytes) -> None:
        super().__init__(reason)
        self.reason = reason
        self.raw = raw


class KafkaError(BrigadeError):
    """The broker or a client failed in a way the caller must hear about."""


class TopologyDriftError(KafkaError):
    """A topic exists with a partition count or config that differs from the topology."""


class ProjectionError(BrigadeError):
    """A read model could not be written or queried."""


class ModelError(BrigadeError):
    """A model service call failed."""


class Transient(ModelError):
    """A failure worth retrying (timeouts, 5xx, connection resets)."""


class RateLimited(Transient):
    """The model service asked us to slow down; honour ``retry_after`` seconds."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class Permanent(ModelError):
    """A failure that will not go away by retrying (bad input, 4xx other than 408/429)."""


class Retry(BrigadeError):
    """Control flow: hand this work back for a later attempt. Not a failure."""

    def __init__(self, *, delay: float) -> None:
        super().__init__(f"retry in {delay:.3f}s")
        self.delay = delay


class Skip(BrigadeError):
    """Control flow: this event needs no processing. Not a failure."""
