"""The notice relay: sends the outbox's due notices to devices that can hear them, and marks them sent.

Campaigns write a row for every notice in the transaction that decides it (campaigns/outbox.py);
this loop turns rows into the device's dialect on its channel and publishes them. A row is sent once
its device is connected and listening, so a notice decided while a device was away, or while it was
restarting, waits for it. After a crash, rows not yet marked are sent again with the same message
id. A replica sends only to the devices connected to its own broker; each batch is claimed in its own
transaction (SKIP LOCKED on PostgreSQL), so a row is never sent twice.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import timedelta

from skylift.campaigns import outbox
from skylift.db.session import Database
from skylift.devices.notices import Notifier, SharedNotice, addressed
from skylift.kit import metrics
from skylift.kit.clock import Clock
from skylift.kit.loop import Loop

log = logging.getLogger(__name__)

Publisher = Callable[[str, bytes], Awaitable[None]]
BATCH = 500
# Sent rows are kept a while (for a look after an incident), then pruned.
KEEP_SENT = timedelta(minutes=10)
PRUNE_EVERY = timedelta(minutes=1)


class NoticeRelay(Loop):
    name = "notice relay"

    def __init__(
        self,
        database: Database,
        notifier: Notifier,
        publish: Publisher,
        clock: Clock,
        interval_seconds: float,
        node: str = "main",
    ) -> None:
        super().__init__(interval_seconds)
        self.database = database
        self.node = node  # only devices connected to this replica's broker
        self.notifier = notifier
        self.publish = publish
        self.clock = clock
        self._pruned_at = clock.now()

    async def round(self) -> None:
        while await self.relay_once() == BATCH:
            pass
        await self._prune()

    async def relay_once(self) -> int:
        """Send one batch of due notices; returns how many rows it handled."""
        async with self.database.transaction() as session:
            rows = await outbox.claim(session, BATCH, self.node)
            now = self.clock.now()
            shared: dict[int, SharedNotice] = {}
            sending = []
            for row in rows:
                try:
                    campaign = row.campaign
                    if campaign.id not in shared:
                        shared[campaign.id] = self.notifier.shared(campaign)
                    notice = self.notifier.for_attempt(
                        shared[campaign.id], row.attempt_id, row.attempt_number, row.message_id, now
                    )
                    sending.append((row, self.publish(*addressed(row.recipient, notice))))
                except Exception:
                    # A notice that cannot be composed (a setting changed since) must not block the others.
                    log.exception("notice %s for attempt %s could not be composed; dropped", row.id, row.attempt_id)
                    metrics.NOTICES_DROPPED.labels(reason="not composable").inc()
            # Sent together: a broker that acknowledges each one (an external one) is waited for once.
            outcomes = await asyncio.gather(*(send for _, send in sending), return_exceptions=True)
            for (row, _), outcome in zip(sending, outcomes, strict=True):
                if isinstance(outcome, BaseException):
                    log.error("notice %s for attempt %s could not be sent; dropped", row.id, row.attempt_id)
                    metrics.NOTICES_DROPPED.labels(reason="not sent").inc()
                else:
                    metrics.NOTICES_SENT.inc()
            await outbox.mark_sent(session, rows, now)
        return len(rows)

    async def _prune(self) -> None:
        now = self.clock.now()
        if now - self._pruned_at < PRUNE_EVERY:
            return
        self._pruned_at = now
        async with self.database.transaction() as session:
            await outbox.prune(session, now - KEEP_SENT)
