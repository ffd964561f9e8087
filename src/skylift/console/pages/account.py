"""Your account: your role, a new password, and your own API tokens for scripts."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from skylift.console import auth, web
from skylift.console.auth import ViewerUser
from skylift.deps import ContextDep, SessionDep
from skylift.kit.ids import Id
from skylift.system import access, audit, users
from skylift.system import user_endpoints as endpoints
from skylift.system.access import IssuedToken, TokenCreate

router = APIRouter()


async def _page(
    request: Request, session: SessionDep, user: ViewerUser, form: web.Form, issued: IssuedToken | None
) -> Response:
    tokens = await endpoints.read_my_tokens(session, user.actor)
    status = 422 if form.errors else 201 if issued else 200
    return web.render(request, "account.html", status=status, tokens=tokens.items, form=form, issued=issued)


@router.get("/account")
async def account(request: Request, session: SessionDep, user: ViewerUser) -> Response:
    return await _page(request, session, user, web.Form(), None)


@router.post("/account/password")
async def change_password(request: Request, context: ContextDep, session: SessionDep, user: ViewerUser) -> Response:
    values = web.text_fields(await web.form_of(request))

    async def change() -> str:
        found = await users.get_user(session, user.user_id)
        await users.change_password(session, found, values.get("current_password", ""), values.get("new_password", ""))
        audit.record(session, user.actor, "user.update", "user", user.user_id, password_changed=True)
        # Every other browser is signed out; this one gets a new session.
        return await access.open_session(session, found, user.actor.at, auth.session_lifetime(context))

    done = await web.perform(request, session, {"current_password": "", "new_password": ""}, change)
    if isinstance(done, web.Form):
        return await _page(request, session, user, done, None)
    response = web.redirect(web.url("/account"), "password_changed")
    auth.set_session(response, done, auth.session_lifetime(context), web.secure_cookies(context))
    return response


@router.post("/account/tokens")
async def create_token(request: Request, session: SessionDep, user: ViewerUser) -> Response:
    values = web.text_fields(await web.form_of(request))

    async def issue() -> IssuedToken:
        body = TokenCreate.model_validate({"name": values.get("token_name", "").strip()})
        return await endpoints.create_my_token(body, session, user.actor)

    done = await web.perform(request, session, values, issue, aliases={"name": "token_name"})
    if isinstance(done, web.Form):
        return await _page(request, session, user, done, None)
    return await _page(request, session, user, web.Form(), done)


@router.post("/account/tokens/{token_id}/delete")
async def revoke_token(request: Request, token_id: Id, session: SessionDep, user: ViewerUser) -> Response:
    await endpoints.revoke_my_token(token_id, session, user.actor)
    return web.redirect(web.url("/account"), "token_revoked")
