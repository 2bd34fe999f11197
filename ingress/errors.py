"""HTTP errors: one exception type that knows its status, code and body."""

from __future__ import annotations

from brigade.errors import BrigadeError
from ingress.models import ErrorBody, ErrorDetail, FieldError


class ApiError(BrigadeError):
    """An answer other than success, with a machine-readable body."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        fields: list[FieldError] | None = None,
        headers: dict[str, str] | None = None,
        job_id: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.detail = ErrorDetail(code=code, message=message, fields=fields or [], jobId=job_id)
        self.headers = headers or {}

    def body(self) -> bytes:
        """The JSON body: ``{"error": {"code", "message", "fields", "jobId"}}``."""
        return ErrorBody(error=self.detail).model_dump_json(exclude_none=True).encode()



def unauthorized() -> ApiError:
    """401: no key, or a key nobody owns."""
    return ApiError(
        401,
        "unauthorized",
        "a valid API key is required (Authorization: Bearer <key>)",
        headers={"WWW-Authenticate": "Bearer"},
    )


def not_found(job_id: str) -> ApiError:
    """404: unknown to this tenant (whether or not another tenant has it)."""
    return ApiError(404, "job_not_found", f"no job {job_id}", job_id=job_id)
