from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, String
from sqlalchemy.orm import Mapped, mapped_column

from skylift.db.base import Base, TimestampMixin


class SystemParameter(TimestampMixin, Base):
    """A run-time parameter an admin can change without a restart (seed 000's 参数管理)."""

    __tablename__ = "system_parameters"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[Any] = mapped_column(JSON)
