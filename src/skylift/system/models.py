from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from skylift.db.base import Base, TimestampMixin, UtcDateTime


class SystemParameter(TimestampMixin, Base):
    """A run-time parameter an admin can change without a restart (seed 000's 参数管理)."""

    __tablename__ = "system_parameters"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[Any] = mapped_column(JSON)


class AuditEvent(Base):
    """One operator action: who did what to which object, and when."""

    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(UtcDateTime(), index=True)
    actor: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(64))
    target_type: Mapped[str] = mapped_column(String(32), index=True)
    target_id: Mapped[int | None] = mapped_column(Integer, default=None)
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
