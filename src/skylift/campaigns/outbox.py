"""The notice outbox: every notice is a row written in the transaction that decided it.

Nothing is sent from memory after a commit: the devices' relay claims rows whose device can hear
them (connected and listening), sends them, and marks them sent. A crash before the mark sends the
row again after the restart, with the same message id; a rollback takes the row with it. On
PostgreSQL rows are claimed with SKIP LOCKED, so replicas never send the same row.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import bindparam, delete, exists, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased, selectinload

from skylift.campaigns.models import Campaign, CampaignDevice, NoticeOutbox
from skylift.campaigns.queries import IN_PROGRESS_STATES
from skylift.campaigns.state import DeviceState
from skylift.db.base import table_of
from skylift.db.chunks import id_chunks
from skylift.db.session import claiming, grew, signal_after_commit
from skylift.packages.models import Package
from skylift.registry.models import Device, Product

# Database.on_signal name the relay listens for.
NOTICES_DUE = "notices-due"


def new_message_id() -> int:
    # Seed 002 describes ids as ten-digit numbers unique per device.
    return 1_000_000_000 + secrets.randbelow(9_000_000_000)


async def enqueue(session: AsyncSession, attempts: Sequence[tuple[int, int]], now: datetime) -> None:
    """The notices of these attempts, as (attempt id, device id), are due: they go out once each device
    can hear them. One statement writes them all."""
    if not attempts:
        return
    rows = [
        {"attempt_id": attempt_id, "device_id": device_id, "message_id": new_message_id(), "created_at": now}
        for attempt_id, device_id in attempts
    ]
    await session.execute(insert(table_of(NoticeOutbox)), rows)
    grew(session, NoticeOutbox.__tablename__, len(rows))
    signal_after_commit(session, NOTICES_DUE)


@dataclass(frozen=True)
class Recipient:
    """Where a device hears its notices, as its row said at the claim (read as plain columns: an ORM
    object per device cost more than composing its notice). Credentials stay sealed until used."""

    name: str
    login_style: str | None
    access_token_sealed: str
    command_topic_sealed: str | None
    gateway_id: int | None
    address: str | None
    product_key: str
    notice_style: str
    connection_epoch: int


@dataclass(frozen=True)
class Due:
    """A claimed row: what its notice is composed from, and the device it goes to."""

    id: int
    message_id: int
    attempt_id: int
    attempt_number: int
    campaign: Campaign
    recipient: Recipient


async def claim(session: AsyncSession, limit: int, node: str = "main") -> list[Due]:
    """Unsent rows whose device listens now on `node`'s broker, oldest first, with what composing them
    needs loaded (a replica sends only to the devices connected to it).

    Each campaign of the batch (its package and files) is loaded once, not once per row."""
    query = (
        select(
            NoticeOutbox.id,
            NoticeOutbox.message_id,
            CampaignDevice.id,
            CampaignDevice.attempts,
            Campaign.id,
            Device.name,
            Device.login_style,
            Device.access_token_sealed,
            Device.command_topic_sealed,
            Device.gateway_id,
            Device.address,
            Product.product_key,
            Product.notice_style,
            Device.connection_epoch,
        )
        .join(Device, Device.id == NoticeOutbox.device_id)
        .join(Product, Product.id == Device.product_id)
        .join(CampaignDevice, CampaignDevice.id == NoticeOutbox.attempt_id)
        .join(Campaign, Campaign.id == CampaignDevice.campaign_id)
        .join(Package, Package.id == Campaign.package_id)
        # A disabled package's notices wait (its campaigns are paused): none goes out until it is enabled.
        # An attempt that ended before its device could hear the notice (canceled, superseded) sends none.
        .where(
            NoticeOutbox.sent_at.is_(None),
            Device.online.is_(True),
            Device.listening.is_(True),
            Device.node == node,
            Package.enabled.is_(True),
            CampaignDevice.state.in_(IN_PROGRESS_STATES),
        )
        .order_by(NoticeOutbox.id)
        .limit(limit)
    )
    query = claiming(session, query, of=NoticeOutbox)
    rows = list((await session.execute(query)).tuples())
    campaign_ids = {row[4] for row in rows}
    campaigns = {
        c.id: c
        for c in await session.scalars(
            select(Campaign)
            .where(Campaign.id.in_(campaign_ids))
            .options(selectinload(Campaign.package).selectinload(Package.files))
        )
    }
    return [
        Due(row_id, message_id, attempt_id, number, campaigns[campaign_id], Recipient(*where))
        for row_id, message_id, attempt_id, number, campaign_id, *where in rows
    ]


async def mark_sent(session: AsyncSession, rows: Sequence[Due], now: datetime) -> None:
    """The rows went out (or were dropped), each on its device's connection at the claim: one
    statement for the batch."""
    if not rows:
        return
    table = table_of(NoticeOutbox)
    await session.execute(
        update(table).where(table.c.id == bindparam("row_id")).values(sent_at=now, sent_epoch=bindparam("epoch")),
        [{"row_id": row.id, "epoch": row.recipient.connection_epoch} for row in rows],
    )


async def send_again_if_unheard(session: AsyncSession, device_ids: Sequence[int]) -> int:
    """These devices listen again: a notice that went out on an earlier connection of theirs and was
    never answered (its attempt is still only notified) goes out again, with the same message id.

    The connection it went to may have been dying (a device that lost its network, or one that had
    just closed while the server still counted it as listening), or the device restarted before it
    acted on it. A subscription on the connection that heard the notice sends nothing again. Returns
    how many notices are due again."""
    newer = aliased(NoticeOutbox)
    latest = select(func.max(newer.id)).where(newer.attempt_id == NoticeOutbox.attempt_id).scalar_subquery()
    epoch = select(Device.connection_epoch).where(Device.id == NoticeOutbox.device_id).scalar_subquery()
    # Correlated, so that each row looks up its own attempt (not every notified attempt of the fleet).
    unanswered = exists().where(
        CampaignDevice.id == NoticeOutbox.attempt_id, CampaignDevice.state == DeviceState.NOTIFIED.value
    )
    again = 0
    for chunk in id_chunks(device_ids):
        result = await session.execute(
            update(NoticeOutbox)
            .where(
                NoticeOutbox.device_id.in_(chunk),
                NoticeOutbox.sent_at.is_not(None),
                NoticeOutbox.sent_epoch < epoch,
                unanswered,
                NoticeOutbox.id == latest,
            )
            .values(sent_at=None, sent_epoch=None)
            .execution_options(synchronize_session=False)
        )
        again += int(getattr(result, "rowcount", 0) or 0)
    if again:
        signal_after_commit(session, NOTICES_DUE)
    return again


async def waiting(session: AsyncSession) -> int:
    """Unsent rows of attempts under way, whether or not their device listens."""
    query = (
        select(func.count())
        .select_from(NoticeOutbox)
        .join(CampaignDevice, CampaignDevice.id == NoticeOutbox.attempt_id)
        .where(NoticeOutbox.sent_at.is_(None), CampaignDevice.state.in_(IN_PROGRESS_STATES))
    )
    return int(await session.scalar(query) or 0)


async def prune(session: AsyncSession, sent_before: datetime) -> int:
    """Forget rows sent before the given time, and unsent ones whose attempt has ended; returns how many.

    A sent row whose attempt is still only notified is kept: its device may come back without having
    heard it (`send_again_if_unheard`)."""
    notified = select(CampaignDevice.id).where(CampaignDevice.state == DeviceState.NOTIFIED.value)
    sent = await session.execute(
        delete(NoticeOutbox).where(
            NoticeOutbox.sent_at.is_not(None),
            NoticeOutbox.sent_at < sent_before,
            NoticeOutbox.attempt_id.not_in(notified),
        )
    )
    ended = select(CampaignDevice.id).where(CampaignDevice.state.not_in(IN_PROGRESS_STATES))
    stale = await session.execute(
        delete(NoticeOutbox).where(NoticeOutbox.sent_at.is_(None), NoticeOutbox.attempt_id.in_(ended))
    )
    return sum(int(getattr(result, "rowcount", 0) or 0) for result in (sent, stale))
