"""Bearer secrets of users: console sessions (a cookie) and API tokens (scripts), and who presents one.

Both are random strings handed out once; the database keeps only their keyed digest (kit.sealing),
so a copy of the database opens no session and calls no API. Sessions live in the database, so
signing out, disabling a user or changing a password ends them on every replica at once.
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from skylift.kit import sealing
from skylift.kit.errors import Conflict, NotFound
from skylift.system.models import ApiToken, User, UserSession

TOKEN_PREFIX = "sky_"
# A session is extended while it is used, but its row is written at most this often.
SESSION_TOUCH = timedelta(minutes=1)
TOKEN_TOUCH = timedelta(minutes=10)
# Longer than any token or session we hand out; longer ones are not looked up at all.
MAX_SECRET_LENGTH = 128
BOOTSTRAP_NAME = "admin token"


@dataclass(frozen=True)
class Principal:
    """Who presents a secret: a user (with the role they have now), or the bootstrap admin token."""

    name: str
    role: str
    user_id: int | None = None


class TokenCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=64, description="What the token is for (e.g. ci)")


class TokenOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    prefix: str = Field(description="The token's first characters")
    created_at: datetime
    last_used_at: datetime | None


class IssuedToken(TokenOut):
    token: str = Field(description="Shown once: keep it (Authorization: Bearer <token>)")


def _new_secret() -> str:
    return secrets.token_urlsafe(32)


def _matching(presented: str) -> list[str]:
    return sealing.keyring().digests(presented)


def is_bootstrap_token(admin_token: str, presented: bytes | None) -> bool:
    """Constant-time check of a bearer token as it arrived (raw header bytes, any characters)."""
    return presented is not None and hmac.compare_digest(presented, admin_token.encode())


async def open_session(session: AsyncSession, user: User, now: datetime, lifetime: timedelta) -> str:
    """A new signed-in session of `user`; the answer is the cookie's value (shown nowhere else)."""
    secret = _new_secret()
    session.add(
        UserSession(
            user_id=user.id,
            digest=sealing.keyring().digest(secret),
            created_at=now,
            last_seen_at=now,
            expires_at=now + lifetime,
        )
    )
    await session.flush()
    return secret


async def session_user(
    session: AsyncSession, secret: str, now: datetime, lifetime: timedelta
) -> tuple[User, UserSession] | None:
    """The enabled user a session cookie belongs to; a session in use is extended (idle expiry)."""
    if not secret or len(secret) > MAX_SECRET_LENGTH:
        return None
    row = await session.scalar(select(UserSession).where(UserSession.digest.in_(_matching(secret))))
    if row is None or row.expires_at <= now:
        return None
    user = await session.get(User, row.user_id)
    if user is None or not user.enabled:
        return None
    if now - row.last_seen_at >= SESSION_TOUCH:
        row.last_seen_at = now
        row.expires_at = now + lifetime
        row.digest = sealing.keyring().digest(secret)  # under the current key after a key change
        await session.flush()
    return user, row


async def close_session(session: AsyncSession, secret: str) -> None:
    if secret and len(secret) <= MAX_SECRET_LENGTH:
        await session.execute(delete(UserSession).where(UserSession.digest.in_(_matching(secret))))


async def sweep_sessions(session: AsyncSession, now: datetime) -> None:
    """Forget expired sessions (at start)."""
    await session.execute(delete(UserSession).where(UserSession.expires_at <= now))


async def issue_token(session: AsyncSession, user: User, name: str, now: datetime) -> IssuedToken:
    secret = TOKEN_PREFIX + _new_secret()
    row = ApiToken(
        user_id=user.id, name=name, digest=sealing.keyring().digest(secret), prefix=secret[:10], created_at=now
    )
    session.add(row)
    await session.flush()
    return IssuedToken(**TokenOut.model_validate(row).model_dump(), token=secret)


async def list_tokens(session: AsyncSession, user_id: int) -> list[ApiToken]:
    return list(await session.scalars(select(ApiToken).where(ApiToken.user_id == user_id).order_by(ApiToken.id)))


async def revoke_token(session: AsyncSession, user_id: int, token_id: int) -> ApiToken:
    row = await session.get(ApiToken, token_id)
    if row is None or row.user_id != user_id:
        raise NotFound(f"no token {token_id}", field="token_id")
    await session.delete(row)
    await session.flush()
    return row


async def token_user(session: AsyncSession, secret: str, now: datetime) -> tuple[User, ApiToken] | None:
    """The enabled user an API token belongs to."""
    if not secret.startswith(TOKEN_PREFIX) or len(secret) > MAX_SECRET_LENGTH:
        return None
    row = await session.scalar(select(ApiToken).where(ApiToken.digest.in_(_matching(secret))))
    if row is None:
        return None
    user = await session.get(User, row.user_id)
    if user is None or not user.enabled:
        return None
    if row.last_used_at is None or now - row.last_used_at >= TOKEN_TOUCH:
        row.last_used_at = now
        # A token found under an older key moves to the current one, so that the old key can be retired.
        row.digest = sealing.keyring().digest(secret)
        await session.flush()
    return user, row


def principal_of(user: User) -> Principal:
    return Principal(name=user.name, role=user.role, user_id=user.id)


def require_user(user_id: int | None) -> int:
    """The id of the user acting; the bootstrap admin token is no user (it has no tokens of its own)."""
    if user_id is None:
        raise Conflict("the bootstrap admin token is not a user: use a user's token for this")
    return user_id
