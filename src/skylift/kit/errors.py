"""Errors as types: each carries an HTTP status and a machine-readable code."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class SkyliftError(Exception):
    status_code = 400
    code = "bad_request"

    def __init__(self, message: str, *, field: str | None = None, errors: list[ItemError] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.errors = errors

    def as_body(self) -> dict[str, dict[str, Any]]:
        body: dict[str, Any] = {"code": self.code, "message": self.message, "field": self.field}
        if self.errors is not None:
            body["errors"] = [error.model_dump() for error in self.errors]
        return {"error": body}


class BadRequest(SkyliftError):
    """A body that cannot be parsed at all (malformed multipart, undecodable headers)."""

    status_code = 400
    code = "bad_request"


class NotFound(SkyliftError):
    status_code = 404
    code = "not_found"


class Conflict(SkyliftError):
    status_code = 409
    code = "conflict"


class Invalid(SkyliftError):
    status_code = 422
    code = "invalid"


class TooLarge(SkyliftError):
    status_code = 413
    code = "too_large"


class Unauthorized(SkyliftError):
    status_code = 401
    code = "unauthorized"


class Forbidden(SkyliftError):
    status_code = 403
    code = "forbidden"


class Gone(SkyliftError):
    status_code = 410
    code = "gone"


class UnsupportedMediaType(SkyliftError):
    status_code = 415
    code = "unsupported_media_type"


class ItemError(BaseModel):
    """What is wrong with one item of a bulk request (one row of an import)."""

    row: int = Field(description="1 for the first item (in a CSV file: the line after the header)")
    field: str | None
    message: str


class ErrorDetail(BaseModel):
    code: str = Field(description="Machine-readable, e.g. not_found, conflict, invalid, unauthorized")
    message: str
    field: str | None = Field(description="The input the error is about, when there is one")
    errors: list[ItemError] | None = Field(
        default=None, description="A bulk request: every item that is wrong (nothing was done)"
    )


class ErrorOut(BaseModel):
    """The body of every error response."""

    error: ErrorDetail


_MEANINGS = {
    400: "The request is malformed",
    401: "Missing or wrong credentials",
    403: "Not allowed, or the signature is invalid or expired",
    404: "No such resource",
    409: "Conflicts with the current state",
    410: "No longer available (the package was disabled)",
    413: "The body is too large",
    415: "The body is of a type this call does not take",
    422: "Invalid input; `field` names it",
}


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` declaring these error statuses with the error body."""
    return {status: {"model": ErrorOut, "description": _MEANINGS[status]} for status in statuses}
