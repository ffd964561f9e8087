"""The rollout engine: a loop that brings active campaigns up to date.

A campaign whose rules depend on the clock (a start time, cron, window, end time, timeouts, retries,
pacing) is advanced every tick. Any other one changes only when something happens to its product's
devices or to the campaign itself, so it is advanced when its product is woken (a device connected,
listens, reported a version, was registered), when everything is woken, and at the latest every
`SWEEP_SECONDS` as a safety net. An idle server with many open campaigns then costs next to nothing.

Its state is the database: after a crash or restart it simply continues. On PostgreSQL each
campaign row is locked with SKIP LOCKED, so several replicas share the work without doubling it;
on SQLite every write transaction is serialized anyway.
"""

from __future__ import annotations

import asyncio
import logging

from sqlalchemy import ColumnElement, String, cast, or_, select, update
from sqlalchemy.orm import selectinload

from skylift.campaigns import rollout
from skylift.campaigns.models import Campaign
from skylift.campaigns.queries import ACTIVE_CAMPAIGN_STATES
from skylift.db.session import Database, claiming
from skylift.kit.clock import Clock, SystemClock
from skylift.kit.loop import Loop
from skylift.packages.models import Package

log = logging.getLogger(__name__)

MIN_TICK_GAP_SECONDS = 0.2
SWEEP_SECONDS = 60.0
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
        self._woken_products: set[int] = set()
        self._woken_all = True
        self._last_sweep: float | None = None

    def wake(self, product_id: int | None = None) -> None:
        """Advance soon the campaigns of `product_id` (something happened to its devices), or all of them."""
        if product_id is None:
            self._woken_all = True
        else:
            self._woken_products.add(product_id)
        super().wake()

    async def round(self) -> None:
        await self.tick()

    async def tick(self) -> None:
        """Advance the campaigns that may have something to do now."""
        woken_all, products = self._woken_all, self._woken_products
        self._woken_all, self._woken_products = False, set()
        # Scheduling, not campaign logic: the sweep's pace follows the event loop's own clock.
        moment = asyncio.get_running_loop().time()
        if self._last_sweep is None or moment - self._last_sweep >= SWEEP_SECONDS:
            woken_all, self._last_sweep = True, moment
        query = select(Campaign.id).where(Campaign.state.in_(ACTIVE_CAMPAIGN_STATES)).order_by(Campaign.id)
        if not woken_all:
            query = query.where(or_(_clock_driven(), Campaign.product_id.in_(products)))
        async with self.database.transaction() as session:
            ids = list((await session.scalars(query)).all())
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
            campaign = await session.scalar(claiming(session, query, of=Campaign))
            if campaign is not None:
                await rollout.advance(session, campaign, self.clock.now())


def _clock_driven() -> ColumnElement[bool]:
    """Campaigns whose next move may come from the clock alone, without any event."""
    return or_(
        Campaign.state == "scheduled",
        Campaign.start_at.is_not(None),
        Campaign.cron.is_not(None),
        Campaign.end_at.is_not(None),
        # A JSON column keeps an explicit None as the JSON `null`, not SQL NULL.
        cast(Campaign.window, String) != "null",
        Campaign.timeout_minutes.is_not(None),
        Campaign.retry_count > 0,
        Campaign.max_per_minute.is_not(None),
    )
