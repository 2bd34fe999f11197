"""The HTTP API's wire shapes: pydantic models for requests and answers.

These models are the single source of the OpenAPI document's schemas, so what the API
validates and what it documents cannot drift apart.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints, model_validator

from brigade.status import Status

Priority = Literal["interactive", "batch"]

MAX_BATCH_ITEMS = 1000
MAX_METADATA_ITEMS = 32
MAX_METADATA_KEY = 64
MAX_METADATA_VALUE = 1024
MetadataKey = Annotated[str, StringConstraints(min_length=1, max_length=MAX_METADATA_KEY)]
MetadataValue = Annotated[str, StringConstraints(max_length=MAX_METADATA_VALUE)]
MAX_ATTEMPTS_CEILING = 100
"""Static upper bound in the schema; the deployment's ``retry.max_attempts_limit`` may be lower."""


class ChatMessage(BaseModel):
    """One OpenAI-style chat message."""

    model_config = ConfigDict(extra="allow")

    role: str = Field(min_length=1, max_length=64)
    content: str | list[dict[str, Any]] | None = None


class ChatInput(BaseModel):
    """Input of a chat model: ``{"messages": [...]}``, other OpenAI fields allowed."""

    model_config = ConfigDict(extra="allow")

    messages: list[ChatMessage] = Field(min_length=1)


class JobRequest(BaseModel):
    """``POST /v1/jobs``: one job. Exactly one of ``input`` and ``payloadRef``."""

    model_config = ConfigDict(extra="forbid")

    modelHint: str | None = Field(default=None, min_length=1, max_length=200)
    input: str | ChatInput | None = Field(
        default=None,
        description="The model input: a string for embedding models, {messages: [...]} for chat models.",
    )
    payloadRef: str | None = Field(
        default=None,
        min_length=1,
        max_length=2048,
        description="URL of a payload already in the object store, instead of input.",
    )
    priority: Priority = "batch"
    batchable: bool = True
    longContext: bool = False
    maxAttempts: int | None = Field(default=None, ge=1, le=MAX_ATTEMPTS_CEILING)
    deadline: AwareDatetime | None = None
    callbackUrl: str | None = Field(default=None, min_length=1, max_length=2048)
    metadata: dict[MetadataKey, MetadataValue] = Field(
        default_factory=dict,
        max_length=MAX_METADATA_ITEMS,
        description=f"At most {MAX_METADATA_ITEMS} keys of 1-{MAX_METADATA_KEY} characters, values up to "
        f"{MAX_METADATA_VALUE} characters.",
    )
    idempotencyKey: str | None = Field(default=None, min_length=1, max_length=256)

    @model_validator(mode="after")
    def _one_payload(self) -> JobRequest:
        if (self.input is None) == (self.payloadRef is None):
            raise ValueError("exactly one of input and payloadRef is required")
        return self


class BatchRequest(BaseModel):
    """``POST /v1/jobs:batch``: many jobs, each validated on its own."""

    model_config = ConfigDict(extra="forbid")

    jobs: list[dict[str, Any]] = Field(
        min_length=1,
        max_length=MAX_BATCH_ITEMS,
        json_schema_extra={"items": {"$ref": "#/components/schemas/JobRequest"}},
    )


class JobAccepted(BaseModel):
    """The answer to a submission: where to look for the job."""

    jobId: str
    status: Status
    statusUrl: str
    duplicate: bool = False
    output: Any | None = None
    error: str | None = None


class FieldError(BaseModel):
    """One field that failed validation."""

    loc: list[str | int]
    field: str
    msg: str
    type: str


class ErrorDetail(BaseModel):
    """A machine-readable error."""

    code: str
    message: str
    fields: list[FieldError] = Field(default_factory=list)
    jobId: str | None = None


class ErrorBody(BaseModel):
    """Every 4xx/5xx answer has this shape."""

    error: ErrorDetail


class BatchItemResult(BaseModel):
    """The outcome of one item of a batch submission."""

    index: int
    status: int
    jobId: str | None = None
    statusUrl: str | None = None
    duplicate: bool = False
    error: ErrorDetail | None = None


class BatchAccepted(BaseModel):
    """The answer to a batch submission: one result per item, in order."""

    accepted: int
    rejected: int
    results: list[BatchItemResult]


class JobStatusBody(BaseModel):
    """``GET /v1/jobs/{jobId}``."""

    jobId: str
    status: Status
    attempts: int
    createdAt: datetime
    updatedAt: datetime
    priority: str | None = None
    pool: str | None = None
    model: str | None = None
    cancelRequested: bool = False
    error: str | None = None


class JobResultBody(BaseModel):
    """``GET /v1/jobs/{jobId}/result``: ``output.embedding`` for embedding models."""

    jobId: str
    output: Any


class JobEventBody(BaseModel):
    """One lifecycle event."""

    eventId: str
    sequence: int
    type: str
    occurredAt: datetime
    detail: dict[str, Any] = Field(default_factory=dict)


class JobEventsBody(BaseModel):
    """``GET /v1/jobs/{jobId}/events``."""

    jobId: str
    events: list[JobEventBody]


class CancelRequest(BaseModel):
    """``POST /v1/jobs/{jobId}/cancel`` (the body is optional)."""

    model_config = ConfigDict(extra="forbid")

    reason: str | None = Field(default=None, max_length=1000)


class CancelAccepted(BaseModel):
    """The cancellation was recorded; the job processor decides when it takes effect."""

    jobId: str
    status: Status
    cancelRequested: bool = True


class Health(BaseModel):
    """``/healthz`` and ``/readyz``."""

    status: Literal["ok", "unavailable"]
    checks: dict[str, str] = Field(default_factory=dict)
