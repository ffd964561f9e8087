"""Errors as types: each carries an HTTP status and a machine-readable code."""

from __future__ import annotations


class SkyliftError(Exception):
    status_code = 400
    code = "bad_request"

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field

    def as_body(self) -> dict[str, dict[str, str | None]]:
        return {"error": {"code": self.code, "message": self.message, "field": self.field}}


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
