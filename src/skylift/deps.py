"""FastAPI dependencies shared by the capabilities' endpoints."""

from __future__ import annotations

import hmac
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.ext.asyncio import AsyncSession

from skylift.context import AppContext
from skylift.kit.errors import Unauthorized
from skylift.system.audit import Actor

_bearer = HTTPBearer(auto_error=False, description="The admin token")


def get_context(request: Request) -> AppContext:
    context: AppContext = request.app.state.skylift
    return context


ContextDep = Annotated[AppContext, Depends(get_context)]


async def get_session(context: ContextDep) -> AsyncIterator[AsyncSession]:
    # The request owns the transaction: services flush, this commits, then queued device messages go out.
    async with context.database.transaction() as session:
        yield session


# "function" scope: commit before the response is sent, so a 2xx always means committed.
SessionDep = Annotated[AsyncSession, Depends(get_session, scope="function")]


ADMIN_REFUSAL = "a valid admin token is required (Authorization: Bearer <token>)"


def is_admin_token(context: AppContext, presented: bytes | None) -> bool:
    """Constant-time check of a bearer token as it arrived (raw header bytes, any characters)."""
    return presented is not None and hmac.compare_digest(presented, context.admin_token.encode())


def require_admin(
    context: ContextDep, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> Actor:
    # Header values reach us decoded as Latin-1; encoding back gives the bytes that were sent.
    presented = None if credentials is None else credentials.credentials.encode("latin-1")
    if not is_admin_token(context, presented):
        raise Unauthorized(ADMIN_REFUSAL)
    # The time the request is handled at, read once here: audit entries are stamped with it.
    return Actor(name="admin", at=context.clock.now())


AdminDep = Annotated[Actor, Depends(require_admin)]


def get_now(context: ContextDep) -> datetime:
    """The time this request is handled at: read once, at the edge, and passed down."""
    return context.clock.now()


NowDep = Annotated[datetime, Depends(get_now)]
