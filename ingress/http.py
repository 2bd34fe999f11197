"""Small HTTP helpers shared by the routes: parsing, answering, limits."""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from starlette.requests import Request
from starlette.responses import Response

from ingress.commands import field_errors
from ingress.errors import ApiError
from ingress.middleware import tenant_of
from ingress.models import FieldError
from ingress.service import Ingress

M = TypeVar("M", bound=BaseModel)
JSON_TYPE = "application/json"


def ingress_of(request: Request) -> Ingress:
    """The app's ``Ingress`` (set by ``create_app``)."""
    ingress: Ingress = request.app.state.ingress
    return ingress


def respond(model: BaseModel, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """A JSON response from a pydantic model, without null fields."""
    return Response(
        model.model_dump_json(exclude_none=True), status_code=status, media_type=JSON_TYPE, headers=headers
    )


def parse_body(raw: bytes, model: type[M]) -> M:
    """Parse and validate a JSON body: 400 for malformed JSON, 422 naming the fields."""
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        errors = field_errors(exc)
        if any(e.type == "json_invalid" for e in errors):
            raise ApiError(400, "malformed_json", "the body is not valid JSON", fields=errors) from exc
        raise ApiError(422, "validation_error", "the body does not match the schema", fields=errors) from exc


def wait_seconds(request: Request, limit: float) -> float:
    """The ``wait`` query parameter, bounded by ``api.max_wait_s`` (422 otherwise)."""
    if not request.scope.get("query_string"):
        return 0.0  # most submissions: skip parsing an empty query string
    text = request.query_params.get("wait")
    if text is None:
        return 0.0
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value <= limit:
        raise ApiError(
            422,
            "validation_error",
            f"wait must be a number of seconds from 0 to {limit:g}",
            fields=[
                FieldError(
                    loc=["query", "wait"],
                    field="wait",
                    msg=f"must be between 0 and {limit:g}",
                    type="wait_range",
                )
            ],
        )
    return value


def idempotency_key(request: Request, body_key: str | None) -> str | None:
    """The ``Idempotency-Key`` header or the body's ``idempotencyKey`` (they must agree)."""
    header = request.headers.get("idempotency-key") or None
    if header is not None and body_key is not None and header != body_key:
        raise ApiError(
            422,
            "validation_error",
            "Idempotency-Key header and idempotencyKey differ",
            fields=[
                FieldError(
                    loc=["idempotencyKey"],
                    field="idempotencyKey",
                    msg="differs from the Idempotency-Key header",
                    type="mismatch",
                )
            ],
        )
    if header is not None and len(header) > 256:
        raise ApiError(
            422,
            "validation_error",
            "Idempotency-Key is longer than 256 characters",
            fields=[
                FieldError(
                    loc=["header", "Idempotency-Key"],
                    field="Idempotency-Key",
                    msg="at most 256 characters",
                    type="string_too_long",
                )
            ],
        )
    return header or body_key


def status_url(request: Request, job_id: str) -> str:
    """The absolute URL of the job's status."""
    # Formatting beats url_for (a route search per call) when a batch answers thousands of ids,
    # and the base URL (a URL parse per request) is the same for every request of a host.
    scope = request.scope
    where = (scope["scheme"], request.headers.get("host"), scope.get("server"), scope.get("root_path", ""))
    return f"{_base_url(request, where)}/v1/jobs/{job_id}"


_BASE_URLS: dict[tuple[Any, ...], str] = {}
_BASE_URLS_MAX = 256  # distinct Host headers remembered; past that, computed per request


def _base_url(request: Request, where: tuple[Any, ...]) -> str:
    base = _BASE_URLS.get(where)
    if base is None:
        base = str(request.base_url).rstrip("/")
        if len(_BASE_URLS) < _BASE_URLS_MAX:
            _BASE_URLS[where] = base
    return base


def charge_jobs(ingress: Ingress, request: Request, count: int) -> None:
    """Charge the tenant's jobs bucket (429 with Retry-After when over)."""
    tenant = tenant_of(request.scope)
    refusal = ingress.limiter.jobs(tenant, count)
    if refusal is not None:
        ingress.metrics.rate_limited.labels(tenant.tenant_id, refusal.limit).inc()
        raise ApiError(
            429,
            "rate_limited",
            "over the tenant's jobs rate limit",
            headers={"Retry-After": refusal.retry_after_header},
        )
