"""Users and roles: who may sign in, with which role, and what a wrong password costs.

Roles are ordered: a `viewer` reads everything; an `operator` also changes products, modules,
devices, packages and campaigns; an `admin` also manages users and the run-time settings and may
read device credentials. Passwords are kept as argon2id hashes (argon2-cffi); checking one takes
tens of milliseconds of CPU, so it runs in a worker thread and never stalls the event loop.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Literal

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from pydantic import BaseModel, ConfigDict, Field, StrictBool
from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from skylift.kit.errors import Conflict, Invalid, NotFound, SkyliftError, Unauthorized
from skylift.kit.pagination import PageRequest, fetch_page
from skylift.system.models import ApiToken, User, UserSession

Role = Literal["admin", "operator", "viewer"]
ROLES: tuple[Role, ...] = ("viewer", "operator", "admin")
USER_NAME_PATTERN = r"^[A-Za-z0-9_.@-]{1,64}$"
MIN_PASSWORD = 8
MAX_PASSWORD = 1024
# From this many failed sign-ins in a row on, each further one makes the user wait, doubling up to the cap.
FREE_FAILURES = 3
FIRST_WAIT = timedelta(seconds=2)
LONGEST_WAIT = timedelta(minutes=15)

_hasher = PasswordHasher()
SIGN_IN_REFUSED = "wrong user name or password"
# Checked against when the name is unknown, so that an unknown name costs as much time as a wrong password.
_DUMMY_HASH = _hasher.hash("not a password of anyone")


def role_allows(role: str, needed: Role) -> bool:
    """Whether `role` includes what `needed` may do (admin ⊃ operator ⊃ viewer)."""
    return role in ROLES and ROLES.index(role) >= ROLES.index(needed)


class TooManySignIns(SkyliftError):
    status_code = 429
    code = "too_many_requests"


class UserCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=USER_NAME_PATTERN, description="Letters, digits and _ . @ -")
    role: Role
    password: str = Field(min_length=MIN_PASSWORD, max_length=MAX_PASSWORD)


class UserPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: Role | None = None
    enabled: StrictBool | None = Field(default=None, description="false: signed out everywhere, tokens refused")
    password: str | None = Field(default=None, min_length=MIN_PASSWORD, max_length=MAX_PASSWORD)


class UserOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    role: str
    enabled: bool
    created_at: datetime
    last_sign_in_at: datetime | None


async def hash_password(password: str) -> str:
    return await asyncio.to_thread(_hasher.hash, password)


async def _password_matches(password_hash: str, password: str) -> bool:
    def check() -> bool:
        try:
            return _hasher.verify(password_hash, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    return await asyncio.to_thread(check)


async def create_user(session: AsyncSession, body: UserCreate) -> User:
    if await session.scalar(select(User.id).where(User.name == body.name)) is not None:
        raise Conflict(f"a user named {body.name} exists already", field="name")
    user = User(name=body.name, role=body.role, password_hash=await hash_password(body.password), enabled=True)
    user.failed_sign_ins = 0
    session.add(user)
    await session.flush()
    return user


async def list_users(session: AsyncSession, page: PageRequest) -> tuple[list[User], int]:
    return await fetch_page(session, select(User).order_by(User.id), page)


async def get_user(session: AsyncSession, user_id: int) -> User:
    user = await session.get(User, user_id)
    if user is None:
        raise NotFound(f"no user {user_id}", field="user_id")
    return user


async def _keeps_an_admin(session: AsyncSession, user: User) -> None:
    """Refuse to leave Skylift without an enabled admin user once it has had one."""
    others = await session.scalar(
        select(func.count()).where(User.role == "admin", User.enabled.is_(True), User.id != user.id)
    )
    if not others:
        raise Conflict(f"{user.name} is the last enabled admin: make another user admin first", field="role")


async def end_sign_ins(session: AsyncSession, user_id: int) -> None:
    """Sign the user out of every browser (a new password, a disabled user)."""
    await session.execute(delete(UserSession).where(UserSession.user_id == user_id))


async def update_user(session: AsyncSession, user_id: int, body: UserPatch) -> User:
    user = await get_user(session, user_id)
    demoted = body.role is not None and body.role != "admin"
    if user.role == "admin" and user.enabled and (demoted or body.enabled is False):
        await _keeps_an_admin(session, user)
    if body.role is not None:
        user.role = body.role
    if body.enabled is not None:
        user.enabled = body.enabled
        if not body.enabled:
            await end_sign_ins(session, user.id)
    if body.password is not None:
        user.password_hash = await hash_password(body.password)
        user.failed_sign_ins = 0
        user.blocked_until = None
        await end_sign_ins(session, user.id)
    await session.flush()
    return user


async def delete_user(session: AsyncSession, user_id: int) -> User:
    """Delete a user with their sessions and tokens; never the last enabled admin."""
    user = await get_user(session, user_id)
    if user.role == "admin" and user.enabled:
        await _keeps_an_admin(session, user)
    await session.execute(delete(ApiToken).where(ApiToken.user_id == user.id))
    await end_sign_ins(session, user.id)
    await session.delete(user)
    await session.flush()
    return user


def _wait_after(failures: int) -> timedelta:
    if failures < FREE_FAILURES:
        return timedelta(0)
    wait: timedelta = FIRST_WAIT * 2 ** min(failures - FREE_FAILURES, 20)
    return min(wait, LONGEST_WAIT)


def _seconds_left(until: datetime, now: datetime) -> int:
    return max(1, int((until - now).total_seconds() + 0.999))


async def sign_in(session: AsyncSession, name: str, password: str, now: datetime) -> User | None:
    """The user this name and password belong to, or None; a wrong password counts (commit it, do not
    raise), and from the third in a row on the user must wait before the next try (TooManySignIns)."""
    user = await session.scalar(select(User).where(User.name == name))
    if user is not None and user.blocked_until is not None and user.blocked_until > now:
        raise TooManySignIns(
            f"too many failed sign-ins: try again in {_seconds_left(user.blocked_until, now)} seconds", field="name"
        )
    matches = await _password_matches(user.password_hash if user is not None else _DUMMY_HASH, password)
    if user is None or not matches or not user.enabled:
        if user is not None and not matches:
            user.failed_sign_ins += 1
            wait = _wait_after(user.failed_sign_ins)
            user.blocked_until = now + wait if wait else None
            await session.flush()
        return None
    user.failed_sign_ins = 0
    user.blocked_until = None
    user.last_sign_in_at = now
    await session.flush()
    return user


async def change_password(session: AsyncSession, user: User, current: str, new: str) -> None:
    """A user's own change: the current password first; every other browser is signed out."""
    if not await _password_matches(user.password_hash, current):
        raise Unauthorized("the current password is wrong", field="current_password")
    if not MIN_PASSWORD <= len(new) <= MAX_PASSWORD:
        raise Invalid(f"a password has {MIN_PASSWORD} to {MAX_PASSWORD} characters", field="new_password")
    user.password_hash = await hash_password(new)
    await end_sign_ins(session, user.id)
    await session.flush()
