"""A pure ASGI guard in front of the app: credentials before the body, and a cap on bodies.

FastAPI reads and parses a JSON body before it runs any dependency, so a check made in a dependency
comes too late to keep a stranger's 50 MB body out of memory. This guard answers 401 before the
first body byte is read, and ends any body that grows past the limit with 413.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from skylift.kit.errors import Unauthorized

_LIMIT_KEY = "skylift.body_limit"


class BodyTooLarge(HTTPException):
    """Raised from `receive` while the app reads a body; the app's error handler answers 413."""

    def __init__(self, limit: int) -> None:
        super().__init__(status_code=413, detail=f"the request body is larger than the limit of {limit} bytes")


@dataclass
class _BodyLimit:
    max_bytes: int | None
    received: int = 0


def lift_body_limit(scope: Scope) -> None:
    """For an endpoint that streams its body and enforces limits of its own (uploads)."""
    limit = scope.get(_LIMIT_KEY)
    if isinstance(limit, _BodyLimit):
        limit.max_bytes = None


def bearer_token(scope: Scope) -> bytes | None:
    """The raw token of `Authorization: Bearer <token>`, or None."""
    for name, value in scope.get("headers", ()):
        if name == b"authorization":
            scheme, _, token = value.partition(b" ")
            return token.strip() if scheme.lower() == b"bearer" else None
    return None


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            return int(value) if value.isdigit() else None
    return None


class RequestGuard:
    """Refuses requests to `protected_prefix` whose bearer token `authenticate` rejects, unread; caps bodies.

    Whom `authenticate` finds for the token is left in the request's scope under `principal_key`."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        protected_prefix: str,
        authenticate: Callable[[bytes | None], Awaitable[object | None]],
        principal_key: str,
        max_body_bytes: int,
        refusal: str,
    ) -> None:
        self.app = app
        self.protected_prefix = protected_prefix
        self.authenticate = authenticate
        self.principal_key = principal_key
        self.max_body_bytes = max_body_bytes
        self.refusal = refusal

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if str(scope.get("path", "")).startswith(self.protected_prefix):
            principal = await self.authenticate(bearer_token(scope))
            if principal is None:
                # The body is never read: the server discards what the client still sends.
                refusal = JSONResponse(Unauthorized(self.refusal).as_body(), 401, {"WWW-Authenticate": "Bearer"})
                await refusal(scope, receive, send)
                return
            scope[self.principal_key] = principal
        limit = _BodyLimit(self.max_body_bytes)
        scope[_LIMIT_KEY] = limit
        declared = _content_length(scope)

        async def limited_receive() -> Message:
            if limit.max_bytes is not None and declared is not None and declared > limit.max_bytes:
                raise BodyTooLarge(limit.max_bytes)
            message = await receive()
            if message["type"] == "http.request":
                limit.received += len(message.get("body", b""))
                if limit.max_bytes is not None and limit.received > limit.max_bytes:
                    raise BodyTooLarge(limit.max_bytes)
            return message

        await self.app(scope, limited_receive, send)
