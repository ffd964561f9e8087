"""The audit log: every operator action, with who, what and when."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from skylift.kit.pagination import PageRequest, fetch_page
from skylift.system.models import AuditEvent


@dataclass(frozen=True)
class Actor:
    """Who acts (a user, or the bootstrap admin token), with which role, and when the request is handled."""

    name: str
    at: datetime
    role: str
    user_id: int | None = None


def record(
    session: AsyncSession,
    actor: Actor,
    action: str,
    target_type: str,
    target_id: int | None,
    **details: Any,
) -> None:
    """Add an audit event to the current transaction: it is kept only if the action itself commits."""
    session.add(
        AuditEvent(
            actor=actor.name,
            at=actor.at,
            action=action,
            target_type=target_type,
            target_id=target_id,
            details=details,
        )
    )


async def list_events(
    session: AsyncSession, target_type: str | None, target_id: int | None, before_id: int | None, page: PageRequest
) -> tuple[list[AuditEvent], int]:
    """Newest first (by id, so pages are stable while new events arrive with `before_id`)."""
    query = select(AuditEvent).order_by(AuditEvent.id.desc())
    if target_type is not None:
        query = query.where(AuditEvent.target_type == target_type)
    if target_id is not None:
        query = query.where(AuditEvent.target_id == target_id)
    if before_id is not None:
        query = query.where(AuditEvent.id < before_id)
    return await fetch_page(session, query, page)
