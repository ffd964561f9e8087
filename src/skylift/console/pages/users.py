"""Users (admins only): who may sign in, with which role; new users, new passwords, their API tokens."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from skylift.console import web
from skylift.console.auth import AdminUser
from skylift.deps import SessionDep
from skylift.kit.ids import Id
from skylift.kit.pagination import PageRequest
from skylift.system import user_endpoints as endpoints
from skylift.system.access import IssuedToken, TokenCreate
from skylift.system.users import ROLES, UserCreate, UserOut, UserPatch

router = APIRouter()


def _roles() -> list[tuple[str, str]]:
    return [(role, role) for role in reversed(ROLES)]


@router.get("/users")
async def user_list(request: Request, session: SessionDep, user: AdminUser, offset: int = 0) -> Response:
    return await _list(request, session, user, offset, web.Form(values={"role": "viewer"}))


async def _list(request: Request, session: SessionDep, user: AdminUser, offset: int, form: web.Form) -> Response:
    page = await endpoints.list_users(session, user.actor, PageRequest(web.PAGE_SIZE, max(offset, 0)))
    status = 422 if form.errors else 200
    return web.render(request, "users.html", status=status, page=page, form=form, roles=ROLES)


@router.post("/users")
async def create_user(request: Request, session: SessionDep, user: AdminUser) -> Response:
    values = web.text_fields(await web.form_of(request))

    async def create() -> UserOut:
        body = UserCreate.model_validate(
            {
                "name": values.get("name", "").strip(),
                "role": values.get("role", ""),
                "password": values.get("password", ""),
            }
        )
        return await endpoints.create_user(body, session, user.actor)

    done = await web.perform(request, session, values, create)
    if isinstance(done, web.Form):
        done.values.pop("password", None)
        return await _list(request, session, user, 0, done)
    return web.redirect(web.url(f"/users/{done.id}"), "created")


@router.get("/users/{user_id}")
async def one_user(request: Request, user_id: Id, session: SessionDep, user: AdminUser) -> Response:
    return await _detail(request, user_id, session, user, web.Form(), None)


async def _detail(
    request: Request, user_id: int, session: SessionDep, user: AdminUser, form: web.Form, issued: IssuedToken | None
) -> Response:
    found = await endpoints.read_user(user_id, session, user.actor)
    tokens = await endpoints.read_user_tokens(user_id, session, user.actor)
    if "role" not in form.values:
        form.values["role"] = found.role
    status = 422 if form.errors else 201 if issued else 200
    return web.render(
        request, "user.html", status=status, user=found, tokens=tokens.items, form=form, roles=ROLES, issued=issued
    )


@router.post("/users/{user_id}")
async def update_user(request: Request, user_id: Id, session: SessionDep, user: AdminUser) -> Response:
    """A new role, a new password, or enabled / disabled: whichever the submitted form carries."""
    values = web.text_fields(await web.form_of(request))

    async def update() -> UserOut:
        patch: dict[str, object] = {}
        if "role" in values:
            patch["role"] = values["role"]
        if "password" in values:
            patch["password"] = values["password"]
        if "enabled" in values:
            patch["enabled"] = values["enabled"] == "true"
        return await endpoints.update_user(user_id, UserPatch.model_validate(patch), session, user.actor)

    done = await web.perform(request, session, values, update)
    if isinstance(done, web.Form):
        done.values.pop("password", None)
        return await _detail(request, user_id, session, user, done, None)
    return web.redirect(web.url(f"/users/{user_id}"), "saved")


@router.post("/users/{user_id}/delete")
async def delete_user(request: Request, user_id: Id, session: SessionDep, user: AdminUser) -> Response:
    done = await web.perform(request, session, {}, lambda: endpoints.delete_user(user_id, session, user.actor))
    if isinstance(done, web.Form):
        return await _detail(request, user_id, session, user, done, None)
    return web.redirect(web.url("/users"), "deleted")


@router.post("/users/{user_id}/tokens")
async def create_token(request: Request, user_id: Id, session: SessionDep, user: AdminUser) -> Response:
    values = web.text_fields(await web.form_of(request))

    async def issue() -> IssuedToken:
        body = TokenCreate.model_validate({"name": values.get("token_name", "").strip()})
        return await endpoints.create_user_token(user_id, body, session, user.actor)

    done = await web.perform(request, session, values, issue, aliases={"name": "token_name"})
    if isinstance(done, web.Form):
        return await _detail(request, user_id, session, user, done, None)
    return await _detail(request, user_id, session, user, web.Form(), done)


@router.post("/users/{user_id}/tokens/{token_id}/delete")
async def revoke_token(request: Request, user_id: Id, token_id: Id, session: SessionDep, user: AdminUser) -> Response:
    await endpoints.revoke_user_token(user_id, token_id, session, user.actor)
    return web.redirect(web.url(f"/users/{user_id}"), "token_revoked")
