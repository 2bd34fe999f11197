"""From a validated request to a ``SubmitJob`` command: shared by the API and the producer SDK.

What counts as "the payload" (hashed for the job id without a key, and compared to detect a
conflict with a key): the model input (or the client's ``payloadRef``), ``modelHint``,
``priority``, ``batchable``, ``longContext``, ``maxAttempts`` (after the default is filled
in), ``deadline`` (as a UTC instant), ``callbackUrl`` and ``metadata``. The idempotency key
itself, the arrival time and where an oversize input is stored are not part of it, so a retry
of the same request is the same job, and a retry that changes any of those fields is a
conflict.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from json.encoder import encode_basestring
from typing import Any

from pydantic import ValidationError

from brigade.errors import BrigadeError
from brigade.ids import canonical_json, event_id, job_id, text_sha256
from brigade.payloadrefs import payload_url as _stored_payload_url
from brigade.payloadrefs import ref_problem
from brigade.settings import Settings
from ingress.callbacks import check_callback_url
from ingress.models import ChatInput, FieldError, JobRequest
from schemas.codec import builder
from schemas.records import CancelJob, JobSpec, SubmitJob


class JobValidationError(BrigadeError):
    """A job request is not acceptable; ``fields`` names what is wrong."""

    def __init__(self, fields: list[FieldError]) -> None:
        super().__init__("; ".join(f"{f.field}: {f.msg}" for f in fields))
        self.fields = fields


@dataclass(frozen=True, slots=True, kw_only=True)
class PreparedJob:
    """A job ready to publish; ``offload`` bytes go to ``spec.payload_ref`` first when set."""

    spec: JobSpec
    offload: bytes | None = None

    @property
    def job_id(self) -> str:
        """The deterministic job id."""
        return self.spec.job_id

    @property
    def payload_hash(self) -> str:
        """sha256 of the canonical payload (see the module docstring)."""
        return self.spec.payload_sha256

    def command(self) -> SubmitJob:
        """The ``SubmitJob`` command; its id is deterministic too."""
        spec = self.spec
        command_id = event_id(spec.job_id, "submit-command", 0, spec.payload_sha256)
        return _new_submit(command_id=command_id, spec=spec, traceparent=None)


# One of each per job: the generated builders cost half the frozen dataclasses' __init__.
_new_spec, _new_submit = builder(JobSpec), builder(SubmitJob)

# pydantic names the union member that failed in ``loc``; the field name leaves it out.
_UNION_TAGS = frozenset({"str", "ChatInput"})


def field_errors(exc: ValidationError, *, prefix: tuple[str | int, ...] = ()) -> list[FieldError]:
    """pydantic's errors as ``FieldError``s with dotted field names."""
    out = []
    for err in exc.errors(include_url=False):
        loc = [*prefix, *err["loc"]]
        name = ".".join(str(p) for p in loc if p not in _UNION_TAGS) or "body"
        out.append(FieldError(loc=list(loc), field=name, msg=err["msg"], type=err["type"]))
    return out


def parse_request(data: Mapping[str, Any] | JobRequest) -> JobRequest:
    """Validate a request given as a mapping (or pass a model through).

    Raises:
        JobValidationError: naming every field that is wrong.
    """
    if isinstance(data, JobRequest):
        return data
    try:
        return JobRequest.model_validate(data)
    except ValidationError as exc:
        raise JobValidationError(field_errors(exc)) from exc


def input_text(request: JobRequest) -> str | None:
    """The model input as the JSON text JobSpec.input carries."""
    value = request.input
    if value is None:
        return None
    if isinstance(value, ChatInput):
        return canonical_json(value.model_dump(mode="json", exclude_unset=True))
    return canonical_json(value)


def payload_of(request: JobRequest, *, max_attempts: int, text: str | None) -> dict[str, Any]:
    """The canonical payload dict (see the module docstring)."""
    deadline = request.deadline.astimezone(UTC).isoformat() if request.deadline else None
    return {
        "input": text,
        "payloadRef": request.payloadRef,
        "modelHint": request.modelHint,
        "priority": request.priority,
        "batchable": request.batchable,
        "longContext": request.longContext,
        "maxAttempts": max_attempts,
        "deadline": deadline,
        "callbackUrl": request.callbackUrl,
        "metadata": dict(request.metadata),
    }


def payload_text(request: JobRequest, *, max_attempts: int, text: str | None) -> str:
    """``canonical_json(payload_of(...))``, written straight from the fields.

    The same text character for character (keys in sorted order, the standard library's
    string escaping; ``tests/ingress/test_commands.py`` compares the two on generated
    requests), at a fifth of the cost: the generic encoder sorting and walking a new dict
    was the largest single cost of preparing a job in a batch.
    """
    deadline = request.deadline.astimezone(UTC).isoformat() if request.deadline else None
    metadata = canonical_json(dict(request.metadata)) if request.metadata else "{}"
    return (
        f'{{"batchable":{_BOOLEAN[request.batchable]},"callbackUrl":{_string(request.callbackUrl)},'
        f'"deadline":{_string(deadline)},"input":{_string(text)},'
        f'"longContext":{_BOOLEAN[request.longContext]},"maxAttempts":{int(max_attempts)!r},'
        f'"metadata":{metadata},"modelHint":{_string(request.modelHint)},'
        f'"payloadRef":{_string(request.payloadRef)},"priority":{_string(request.priority)}}}'
    )


_BOOLEAN = {True: "true", False: "false"}


def _string(value: str | None) -> str:
    return "null" if value is None else encode_basestring(value)


def _check_limits(
    request: JobRequest, settings: Settings, *, tenant_id: str, allow_private_callbacks: bool, now: datetime
) -> int:
    errors: list[FieldError] = []
    if request.payloadRef is not None:
        problem = ref_problem(request.payloadRef, store_url=settings.object_store_url, tenant_id=tenant_id)
        if problem is not None:
            errors.append(FieldError(loc=["payloadRef"], field="payloadRef", msg=problem, type="payload_ref"))
    limit = settings.retry.max_attempts_limit
    attempts = request.maxAttempts or min(settings.retry.default_max_attempts, limit)
    if attempts > limit:
        errors.append(
            FieldError(
                loc=["maxAttempts"],
                field="maxAttempts",
                msg=f"must be at most {limit}",
                type="less_than_equal",
            )
        )
    if request.deadline is not None and request.deadline <= now:
        errors.append(
            FieldError(loc=["deadline"], field="deadline", msg="must be in the future", type="deadline_past")
        )
    if request.callbackUrl is not None:
        problem = check_callback_url(request.callbackUrl, allow_private=allow_private_callbacks)
        if problem is not None:
            errors.append(
                FieldError(loc=["callbackUrl"], field="callbackUrl", msg=problem, type="callback_url")
            )
    if errors:
        raise JobValidationError(errors)
    return attempts


def payload_url(settings: Settings, tenant_id: str, payload_hash: str) -> str:
    """Where an oversize input is stored: content-addressed, so a rewrite is harmless."""
    return _stored_payload_url(settings.object_store_url, tenant_id, payload_hash)


def prepare(
    request: JobRequest,
    *,
    settings: Settings,
    tenant_id: str,
    idempotency_key: str | None = None,
    allow_private_callbacks: bool = False,
    now: datetime | None = None,
) -> PreparedJob:
    """Check deployment limits, hash the payload, derive the job id and build the JobSpec.

    Raises:
        JobValidationError: maxAttempts above the limit, a past deadline, a refused callback,
            a payloadRef that is not one of the tenant's stored payloads.
    """
    now = now or datetime.now(UTC)
    attempts = _check_limits(
        request, settings, tenant_id=tenant_id, allow_private_callbacks=allow_private_callbacks, now=now
    )
    text = input_text(request)
    digest = text_sha256(payload_text(request, max_attempts=attempts, text=text))
    key = idempotency_key or request.idempotencyKey
    jid = job_id(tenant_id, key, digest)
    size = len(text.encode()) if text is not None else 0
    offload = None
    inline, ref = text, request.payloadRef
    if text is not None and size > settings.inline_threshold_bytes:
        offload, inline, ref = text.encode(), None, payload_url(settings, tenant_id, digest)
    spec = _new_spec(
        job_id=jid,
        tenant_id=tenant_id,
        payload_sha256=digest,
        created_at=now,
        idempotency_key=key,
        model_hint=request.modelHint,
        input=inline,
        payload_ref=ref,
        payload_size=size,
        priority=request.priority,
        batchable=request.batchable,
        long_context=request.longContext,
        max_attempts=attempts,
        deadline=request.deadline.astimezone(UTC) if request.deadline else None,
        callback_url=request.callbackUrl,
        metadata=dict(request.metadata),
    )
    return PreparedJob(spec=spec, offload=offload)


def cancel_command(*, tenant_id: str, job: str, reason: str | None, now: datetime | None = None) -> CancelJob:
    """A ``CancelJob`` command for ``job``."""
    at = now or datetime.now(UTC)
    return CancelJob(
        command_id=event_id(job, "cancel-command", 0, at.isoformat()),
        job_id=job,
        tenant_id=tenant_id,
        requested_at=at,
        reason=reason,
    )
