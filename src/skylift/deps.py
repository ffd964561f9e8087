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


def require_admin(
    context: ContextDep, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> str:
    if credentials is None or not hmac.compare_digest(credentials.credentials, context.admin_token):
        raise Unauthorized("a valid admin token is required (Authorization: Bearer <token>)")
    return "admin"


AdminDep = Annotated[str, Depends(require_admin)]


def get_now(context: ContextDep) -> datetime:
    """The time this request is handled at: read once, at the edge, and passed down."""
    return context.clock.now()


NowDep = Annotated[datetime, Depends(get_now)]
