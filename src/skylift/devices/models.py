from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, LargeBinary, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from skylift.db.base import Base, Id, UtcDateTime


class InboxMessage(Base):
    """A device's MQTT message that was acknowledged but not applied yet (see devices/inbox.py).

    Replayed in id order at start. No foreign key: a device deleted meanwhile only leaves rows that
    the replay discards, and never fails the insert of other devices' messages."""

    __tablename__ = "device_inbox"

    id: Mapped[int] = mapped_column(primary_key=True)
    device_id: Mapped[int] = mapped_column(Id)
    # How the device had logged in, to rebuild its identity at replay.
    login_style: Mapped[str] = mapped_column(String(16))
    auto_subscribe: Mapped[bool] = mapped_column(Boolean)
    topic: Mapped[str] = mapped_column(Text)
    payload: Mapped[bytes] = mapped_column(LargeBinary)
    received_at: Mapped[datetime] = mapped_column(UtcDateTime())
    # The replica whose broker acknowledged it: that replica applies it, or the one that takes over
    # after it stopped beating (devices/nodes.py).
    node: Mapped[str] = mapped_column(String(64), default="main", index=True)


class Node(Base):
    """A Skylift process sharing the database (SKYLIFT_NODE): alive while its `seen_at` is recent."""

    __tablename__ = "nodes"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    # The process running under this name (a random id it made at start): a newer one replaces it.
    incarnation: Mapped[str] = mapped_column(String(32), default="")
    started_at: Mapped[datetime] = mapped_column(UtcDateTime())
    seen_at: Mapped[datetime] = mapped_column(UtcDateTime())
