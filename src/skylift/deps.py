"""FastAPI dependencies shared by the capabilities' endpoints."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import datetime
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.ext.asyncio import AsyncSession

from skylift.context import AppContext
from skylift.kit.errors import Forbidden, Unauthorized
from skylift.system import access
from skylift.system.access import Principal
from skylift.system.audit import Actor
from skylift.system.users import Role, role_allows

_bearer = HTTPBearer(auto_error=False, description="The bootstrap admin token, or a user's API token")


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


async def get_reading_session(context: ContextDep) -> AsyncIterator[AsyncSession]:
    # A request that only reads: on SQLite it neither waits for the writer (devices' reports, the engine)
    # nor holds it up; changing a row in it is a programming error (db.session.WriteInReadingSession).
    async with context.database.reading() as session:
        yield session


ReadingDep = Annotated[AsyncSession, Depends(get_reading_session, scope="function")]


ADMIN_REFUSAL = "a valid token is required (Authorization: Bearer <token>)"
# Where the request guard leaves who presented the bearer token (kit.guards answers 401 without one).
PRINCIPAL = "skylift.principal"


async def authenticate(context: AppContext, presented: bytes | None) -> Principal | None:
    """Who a bearer token (raw header bytes) belongs to: the bootstrap admin token, or a user's API token."""
    if presented is None:
        return None
    if access.is_bootstrap_token(context.admin_token, presented):
        return Principal(name=access.BOOTSTRAP_NAME, role="admin")
    try:
        text = presented.decode("ascii")
    except UnicodeDecodeError:
        return None
    if not text.startswith(access.TOKEN_PREFIX):
        return None
    async with context.database.transaction() as session:
        found = await access.token_user(session, text, context.clock.now())
    return None if found is None else access.principal_of(found[0])


def _require(needed: Role) -> Callable[..., Actor]:
    def dependency(
        request: Request,
        context: ContextDep,
        # Declares the bearer scheme in the OpenAPI description; the guard has checked the token already.
        _: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    ) -> Actor:
        principal = request.scope.get(PRINCIPAL)
        if not isinstance(principal, Principal):
            raise Unauthorized(ADMIN_REFUSAL)
        if not role_allows(principal.role, needed):
            raise Forbidden(f"this needs the {needed} role; {principal.name} is {principal.role}")
        # The time the request is handled at, read once here: audit entries are stamped with it.
        return Actor(name=principal.name, at=context.clock.now(), role=principal.role, user_id=principal.user_id)

    return dependency


# Reads: every role. Changes to products, modules, devices, packages and campaigns: operators and admins.
# Users, run-time settings and device credentials: admins.
ViewerDep = Annotated[Actor, Depends(_require("viewer"))]
OperatorDep = Annotated[Actor, Depends(_require("operator"))]
AdminDep = Annotated[Actor, Depends(_require("admin"))]


def get_now(context: ContextDep) -> datetime:
    """The time this request is handled at: read once, at the edge, and passed down."""
    return context.clock.now()


NowDep = Annotated[datetime, Depends(get_now)]
