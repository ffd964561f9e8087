"""Signing in and out, and the language switch (remembered in a cookie)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import RedirectResponse, Response

from skylift.console import auth, i18n, web
from skylift.deps import ContextDep, SessionDep
from skylift.system import access, audit, users
from skylift.system.audit import Actor
from skylift.system.users import TooManySignIns

router = APIRouter()
ONE_YEAR = 365 * 24 * 3600


def _safe_next(target: str | None) -> str:
    # Only a console page: never another site (an open redirect).
    if target and target.startswith(web.PREFIX + "/") and not target.startswith("//"):
        return target
    return web.url("/")


@router.get("/sign-in")
async def sign_in_page(request: Request, next: str | None = None) -> Response:
    return web.render(request, "sign_in.html", form=web.Form(), next=_safe_next(next))


@router.post("/sign-in")
async def sign_in(request: Request, context: ContextDep, session: SessionDep) -> Response:
    fields = web.text_fields(await web.form_of(request))
    name, password = fields.get("name", "").strip(), fields.get("password", "")
    target = _safe_next(fields.get("next"))
    catalog = web.catalog_of(request)
    form = web.Form(values={"name": name})
    now = context.clock.now()
    try:
        user = await users.sign_in(session, name, password, now) if name and password else None
    except TooManySignIns as exc:
        form.errors["name"] = catalog.translate(exc.message)
        return web.render(request, "sign_in.html", status=429, form=form, next=target)
    if user is None:
        # The failure counted above is committed with this answer.
        form.errors["password"] = catalog.gettext("Wrong user name or password.")
        return web.render(request, "sign_in.html", status=401, form=form, next=target)
    lifetime = auth.session_lifetime(context)
    secret = await access.open_session(session, user, now, lifetime)
    audit.record(session, Actor(user.name, now, user.role, user.id), "user.sign_in", "user", user.id)
    response = web.redirect(target)
    auth.set_session(response, secret, lifetime, web.secure_cookies(context))
    return response


@router.post("/sign-out")
async def sign_out(request: Request, context: ContextDep, session: SessionDep) -> Response:
    secret = request.cookies.get(auth.SESSION_COOKIE)
    if secret:
        await access.close_session(session, secret)
    response = web.redirect(web.url("/sign-in"), notice="signed_out")
    auth.clear_session(response, web.secure_cookies(context))
    return response


@router.get("/language/{language}")
async def switch_language(language: str, next: str | None = None) -> Response:
    """Remember the reader's language (a preference, so a plain link may set it)."""
    response = RedirectResponse(_safe_next(next), status_code=303)
    if language in i18n.LANGUAGES:
        response.set_cookie(i18n.LANGUAGE_COOKIE, language, max_age=ONE_YEAR, samesite="lax", path="/")
    return response
