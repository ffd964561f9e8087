"""`/users`: admins manage users; everyone reads who they are and manages their own API tokens."""

from __future__ import annotations

from fastapi import APIRouter, Response
from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession

from skylift.deps import AdminDep, ReadingDep, SessionDep, ViewerDep
from skylift.kit.ids import Id
from skylift.kit.pagination import PageDep
from skylift.kit.schemas import ItemsOut, Page
from skylift.system import access, audit, users
from skylift.system.access import IssuedToken, TokenCreate, TokenOut
from skylift.system.audit import Actor
from skylift.system.users import UserCreate, UserOut, UserPatch

router = APIRouter(prefix="/users", tags=["users"])


class MeOut(BaseModel):
    name: str
    role: str
    user_id: int | None


# The routes of /users/me come first: "me" is not a user id.
@router.get("/me", response_model=MeOut)
async def read_me(actor: ViewerDep) -> MeOut:
    """Who the token belongs to, and their role."""
    return MeOut(name=actor.name, role=actor.role, user_id=actor.user_id)


@router.get("/me/tokens", response_model=ItemsOut[TokenOut])
async def read_my_tokens(session: ReadingDep, actor: ViewerDep) -> ItemsOut[TokenOut]:
    return await _tokens(session, access.require_user(actor.user_id))


@router.post("/me/tokens", status_code=201, response_model=IssuedToken)
async def create_my_token(body: TokenCreate, session: SessionDep, actor: ViewerDep) -> IssuedToken:
    """A new API token that acts as you, with your role; the answer is the only time it is shown."""
    return await _issue(session, actor, access.require_user(actor.user_id), body)


@router.delete("/me/tokens/{token_id}", status_code=204, response_class=Response)
async def revoke_my_token(token_id: Id, session: SessionDep, actor: ViewerDep) -> None:
    await _revoke(session, actor, access.require_user(actor.user_id), token_id)


async def _tokens(session: AsyncSession, user_id: int) -> ItemsOut[TokenOut]:
    await users.get_user(session, user_id)
    return ItemsOut(items=[TokenOut.model_validate(t) for t in await access.list_tokens(session, user_id)])


async def _issue(session: AsyncSession, actor: Actor, user_id: int, body: TokenCreate) -> IssuedToken:
    user = await users.get_user(session, user_id)
    issued = await access.issue_token(session, user, body.name, actor.at)
    audit.record(session, actor, "token.create", "user", user.id, token_id=issued.id, name=body.name)
    return issued


async def _revoke(session: AsyncSession, actor: Actor, user_id: int, token_id: int) -> None:
    token = await access.revoke_token(session, user_id, token_id)
    audit.record(session, actor, "token.revoke", "user", user_id, token_id=token_id, name=token.name)


@router.get("", response_model=Page[UserOut])
async def list_users(session: ReadingDep, _: AdminDep, page: PageDep) -> Page[UserOut]:
    found, total = await users.list_users(session, page)
    return page.answer([UserOut.model_validate(u) for u in found], total)


@router.post("", status_code=201, response_model=UserOut)
async def create_user(body: UserCreate, session: SessionDep, actor: AdminDep) -> UserOut:
    user = await users.create_user(session, body)
    audit.record(session, actor, "user.create", "user", user.id, name=user.name, role=user.role)
    return UserOut.model_validate(user)


@router.get("/{user_id}", response_model=UserOut)
async def read_user(user_id: Id, session: ReadingDep, _: AdminDep) -> UserOut:
    return UserOut.model_validate(await users.get_user(session, user_id))


@router.patch("/{user_id}", response_model=UserOut)
async def update_user(user_id: Id, body: UserPatch, session: SessionDep, actor: AdminDep) -> UserOut:
    """Change a user's role, disable or enable them, or set a new password (which signs them out)."""
    user = await users.update_user(session, user_id, body)
    changes = body.model_dump(exclude_none=True, exclude={"password"})
    if body.password is not None:
        changes["password_changed"] = True
    audit.record(session, actor, "user.update", "user", user_id, **changes)
    return UserOut.model_validate(user)


@router.delete("/{user_id}", status_code=204, response_class=Response)
async def delete_user(user_id: Id, session: SessionDep, actor: AdminDep) -> None:
    """Delete a user with their sessions and API tokens (never the last enabled admin)."""
    user = await users.delete_user(session, user_id)
    audit.record(session, actor, "user.delete", "user", user_id, name=user.name)


@router.get("/{user_id}/tokens", response_model=ItemsOut[TokenOut])
async def read_user_tokens(user_id: Id, session: ReadingDep, _: AdminDep) -> ItemsOut[TokenOut]:
    return await _tokens(session, user_id)


@router.post("/{user_id}/tokens", status_code=201, response_model=IssuedToken)
async def create_user_token(user_id: Id, body: TokenCreate, session: SessionDep, actor: AdminDep) -> IssuedToken:
    """A token for a user (a script's own account, say): it acts with that user's role; shown once."""
    return await _issue(session, actor, user_id, body)


@router.delete("/{user_id}/tokens/{token_id}", status_code=204, response_class=Response)
async def revoke_user_token(user_id: Id, token_id: Id, session: SessionDep, actor: AdminDep) -> None:
    await _revoke(session, actor, user_id, token_id)
