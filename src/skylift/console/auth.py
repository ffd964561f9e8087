"""Who is looking at a console page: the session cookie, the role a page needs, and CSRF tokens.

The session cookie is HttpOnly and SameSite=Lax (Secure behind HTTPS); its value is a random secret
of which the database keeps a keyed digest (system.access). Every form carries a CSRF token derived
from the cookie with a keyed HMAC, and every request that changes something must present it (a form
field, or the X-CSRF-Token header for scripts of the page): a page of another site can neither read
the token nor make the browser send it.
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass
from datetime import timedelta
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.responses import Response

from skylift.context import AppContext
from skylift.deps import ContextDep, SessionDep
from skylift.kit import sealing
from skylift.system import access
from skylift.system.audit import Actor
from skylift.system.users import Role, role_allows

SESSION_COOKIE = "skylift_session"
# Before signing in: what the sign-in form's CSRF token is derived from.
PRESESSION_COOKIE = "skylift_presession"
CSRF_FIELD = "csrf"
CSRF_HEADER = "x-csrf-token"
COOKIE_PATH = "/"
SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}


class SignInRequired(Exception):
    """No valid session: the page answers with the sign-in page (or 401 for a script)."""


class NotAllowed(Exception):
    """Signed in, but the user's role does not include what the page does."""

    def __init__(self, needed: Role) -> None:
        super().__init__(needed)
        self.needed = needed


class CsrfRefused(Exception):
    """A change without the form's token (an old page, or another site's form)."""


@dataclass(frozen=True)
class ConsoleUser:
    """The signed-in user of this request, as the page and the audit log see them."""

    user_id: int
    name: str
    role: str
    actor: Actor

    def may(self, needed: Role) -> bool:
        return role_allows(self.role, needed)


def session_lifetime(context: ContextDep) -> timedelta:
    return timedelta(hours=context.settings.console_session_hours)


async def current_user(request: Request, context: ContextDep, session: SessionDep) -> ConsoleUser:
    return await _signed_in(request, context, session)


async def _signed_in(request: Request, context: AppContext, session: AsyncSession) -> ConsoleUser:
    secret = request.cookies.get(SESSION_COOKIE)
    now = context.clock.now()
    found = await access.session_user(session, secret, now, session_lifetime(context)) if secret else None
    if found is None:
        raise SignInRequired
    user = found[0]
    signed_in = ConsoleUser(user.id, user.name, user.role, Actor(user.name, now, user.role, user.id))
    request.state.user = signed_in
    return signed_in


def _require(needed: Role) -> object:
    async def dependency(user: Annotated[ConsoleUser, Depends(current_user)]) -> ConsoleUser:
        if not user.may(needed):
            raise NotAllowed(needed)
        return user

    return dependency


async def _operator_apart(request: Request, context: ContextDep) -> ConsoleUser:
    # Its own short transaction: the request's session then holds no database lock while a long
    # upload streams in (on SQLite every transaction takes the write lock at once).
    async with context.database.transaction() as session:
        user = await _signed_in(request, context, session)
    if not user.may("operator"):
        raise NotAllowed("operator")
    return user


ViewerUser = Annotated[ConsoleUser, Depends(_require("viewer"))]
# An operator checked before the request's own transaction begins (uploads).
OperatorApart = Annotated[ConsoleUser, Depends(_operator_apart)]
OperatorUser = Annotated[ConsoleUser, Depends(_require("operator"))]
AdminUser = Annotated[ConsoleUser, Depends(_require("admin"))]


def csrf_token(request: Request) -> str:
    """The token this browser's forms carry (empty before it has any cookie to derive it from)."""
    basis = request.cookies.get(SESSION_COOKIE) or request.cookies.get(PRESESSION_COOKIE)
    if not basis:
        basis = getattr(request.state, "presession", "")
    return sealing.keyring().digest(f"console csrf {basis}") if basis else ""


async def check_csrf(request: Request) -> None:
    """A dependency of every console route: a request that may change something must carry the token."""
    if request.method in SAFE_METHODS:
        return
    expected = csrf_token(request)
    presented = request.headers.get(CSRF_HEADER)
    if presented is None:
        content_type = request.headers.get("content-type", "")
        if content_type.startswith(("application/x-www-form-urlencoded", "multipart/form-data")):
            value = (await request.form()).get(CSRF_FIELD)
            presented = value if isinstance(value, str) else None
    if not expected or not presented or not hmac.compare_digest(presented, expected):
        raise CsrfRefused


def ensure_presession(request: Request, response: Response, secure: bool) -> None:
    """Give a browser without cookies one to derive the sign-in form's CSRF token from."""
    if request.cookies.get(SESSION_COOKIE) or request.cookies.get(PRESESSION_COOKIE):
        return
    value = getattr(request.state, "presession", None) or secrets.token_urlsafe(32)
    request.state.presession = value
    response.set_cookie(PRESESSION_COOKIE, value, httponly=True, samesite="lax", secure=secure, path=COOKIE_PATH)


def new_presession(request: Request) -> None:
    """Choose the pre-session value before the page renders, so its forms carry the matching token."""
    if not (request.cookies.get(SESSION_COOKIE) or request.cookies.get(PRESESSION_COOKIE)):
        request.state.presession = secrets.token_urlsafe(32)


def set_session(response: Response, secret: str, lifetime: timedelta, secure: bool) -> None:
    response.set_cookie(
        SESSION_COOKIE,
        secret,
        max_age=int(lifetime.total_seconds()),
        httponly=True,
        samesite="lax",
        secure=secure,
        path=COOKIE_PATH,
    )
    response.delete_cookie(PRESESSION_COOKIE, path=COOKIE_PATH)


def clear_session(response: Response, secure: bool) -> None:
    response.delete_cookie(SESSION_COOKIE, path=COOKIE_PATH, httponly=True, samesite="lax", secure=secure)
