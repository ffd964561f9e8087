"""The rollout engine: a loop that brings every active campaign up to date, once a tick.

Its state is the database: after a crash or restart it simply continues. On PostgreSQL each
campaign row is locked with SKIP LOCKED, so several replicas share the work without doubling it;
on SQLite every write transaction is serialized anyway.
"""

from __future__ import annotations

import logging

from sqlalchemy import select, update
from sqlalchemy.orm import selectinload

from skylift.campaigns import rollout
from skylift.campaigns.models import Campaign
from skylift.campaigns.queries import ACTIVE_CAMPAIGN_STATES
from skylift.db.session import Database
from skylift.kit.clock import Clock, SystemClock
from skylift.kit.loop import Loop
from skylift.packages.models import Package

log = logging.getLogger(__name__)

MIN_TICK_GAP_SECONDS = 0.2
ENGINE_ERROR_PREFIX = "paused after an error in the rollout engine: "


class RolloutEngine(Loop):
    name = "rollout engine"

    def __init__(
        self,
        database: Database,
        interval_seconds: float,
        clock: Clock | None = None,
    ) -> None:
        # Wakes during a connect or report storm are coalesced into at most one tick per gap.
        super().__init__(interval_seconds, gap_seconds=MIN_TICK_GAP_SECONDS)
        self.database = database
        self.clock = clock or SystemClock()

    async def round(self) -> None:
        await self.tick()

    async def tick(self) -> None:
        async with self.database.transaction() as session:
            ids = list(
                (await session.scalars(select(Campaign.id).where(Campaign.state.in_(ACTIVE_CAMPAIGN_STATES)))).all()
            )
        for campaign_id in ids:
            try:
                await self.advance(campaign_id)
            except Exception as exc:
                # One broken campaign must not stop the others: it is paused with the error as its reason.
                log.exception("rollout engine step of campaign %s failed; pausing it", campaign_id)
                await self._pause_failed(campaign_id, exc)

    async def _pause_failed(self, campaign_id: int, error: Exception) -> None:
        reason = f"{ENGINE_ERROR_PREFIX}{type(error).__name__}: {error}"[:500]
        try:
            async with self.database.transaction() as session:
                await session.execute(
                    update(Campaign)
                    .where(Campaign.id == campaign_id, Campaign.state.in_(("scheduled", "running")))
                    .values(state="paused", paused_reason=reason)
                )
        except Exception:
            log.exception("could not pause campaign %s after its step failed", campaign_id)

    async def advance(self, campaign_id: int) -> None:
        async with self.database.transaction() as session:
            query = (
                select(Campaign)
                .where(Campaign.id == campaign_id)
                .options(selectinload(Campaign.package).selectinload(Package.files))
            )
            if not self.database.is_sqlite:
                query = query.with_for_update(skip_locked=True, of=Campaign)
            campaign = await session.scalar(query)
            if campaign is not None:
                await rollout.advance(session, campaign, self.clock.now())
