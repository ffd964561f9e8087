"""The engine step (`campaigns.rollout.advance`) on a real database (SQLite, or PostgreSQL), one tick at a time.

The end-to-end tests drive the engine through a running server; here the clock is in the test's
hand, so schedules, missed runs, end times and error thresholds are checked without waiting.
Notices are collected where the broker would take them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import ValidationError
from sqlalchemy import select

from engine_kit import NOW, World
from skylift.campaigns import actions, attempts, rollout
from skylift.campaigns.engine import RolloutEngine
from skylift.campaigns.models import Campaign, CampaignDevice
from skylift.campaigns.queries import get_campaign
from skylift.campaigns.schemas import CampaignCreate
from skylift.kit.clock import ManualClock
from skylift.registry import service as registry
from skylift.registry.models import DeviceVersion


class TestCronRuns:
    def test_runs_missed_while_down_collapse_into_one(self, world: World, run: Callable[..., Any]) -> None:
        run(world.add_devices(2))
        cid = run(world.create(schedule={"cron": "0 * * * *"}))

        # Pretend the server was down for three scheduled runs.
        async def rewind(session: Any) -> None:
            campaign = await session.get(Campaign, cid)
            campaign.next_run_at = NOW - timedelta(hours=3)

        run(world.run(rewind))
        campaign = run(world.tick(cid, NOW))
        assert campaign.state == "running"
        assert campaign.next_run_at == datetime(2026, 11, 23, 13, 0, tzinfo=UTC)
        assert len(run(world.attempts(cid))) == 2
        assert run(world.notices()) == 2

        # Devices that appear later are taken at the next run only.
        run(world.add_devices(1))
        run(world.tick(cid, NOW + timedelta(minutes=30)))
        assert len(run(world.attempts(cid))) == 2
        run(world.tick(cid, datetime(2026, 11, 23, 13, 0, 5, tzinfo=UTC)))
        assert len(run(world.attempts(cid))) == 3
        assert run(world.notices()) == 3


class TestIdempotence:
    def test_ticking_twice_sends_nothing_twice(self, world: World, run: Callable[..., Any]) -> None:
        run(world.add_devices(3))
        cid = run(world.create())
        for _ in range(3):
            run(world.tick(cid, NOW))
        assert run(world.notices()) == 3
        assert {a.attempts for a in run(world.attempts(cid)).values()} == {1}


class TestEndAndWindow:
    def test_nothing_goes_out_outside_the_window(self, world: World, run: Callable[..., Any]) -> None:
        run(world.add_devices(2))
        # The campaign is created at NOW; its window opens two hours later.
        opens = NOW.replace(second=0, microsecond=0) + timedelta(hours=2)
        window = {"start": f"{opens:%H:%M}", "end": f"{opens + timedelta(hours=1):%H:%M}", "tz": "UTC"}
        cid = run(world.create(schedule={"window": window}))
        assert run(world.notices()) == 0
        run(world.tick(cid, opens - timedelta(minutes=1)))
        assert run(world.notices()) == 0
        run(world.tick(cid, opens + timedelta(minutes=30)))
        assert run(world.notices()) == 2

    def test_end_time_cancels_the_waiting_and_finishes(self, world: World, run: Callable[..., Any]) -> None:
        run(world.add_devices(4))
        cid = run(world.create(groups=[50, 100], schedule={"end_at": (NOW + timedelta(hours=1)).isoformat()}))
        attempts = run(world.attempts(cid))
        notified = [d for d, a in attempts.items() if a.state == "notified"]
        assert len(notified) == 2
        for device_id in notified:
            run(world.report(cid, device_id, 100))
        campaign = run(world.tick(cid, NOW + timedelta(hours=2)))
        assert campaign.state == "finished"
        states = sorted(a.state for a in run(world.attempts(cid)).values())
        assert states == ["canceled", "canceled", "succeeded", "succeeded"]


class TestErrorThreshold:
    def test_abort_cancels_waiting_devices(self, world: World, run: Callable[..., Any]) -> None:
        run(world.add_devices(4))
        cid = run(world.create(groups=[50, 100], error_threshold={"count": 2}, on_error="abort"))
        notified = [d for d, a in run(world.attempts(cid)).items() if a.state == "notified"]
        for device_id in notified:
            run(world.report(cid, device_id, -3))
        campaign = run(world.tick(cid, NOW))
        assert campaign.state == "aborted"
        assert "2 devices failed" in (campaign.paused_reason or "")
        assert sorted(a.state for a in run(world.attempts(cid)).values()) == [
            "canceled",
            "canceled",
            "failed",
            "failed",
        ]

    def test_failures_with_retries_left_do_not_count(self, world: World, run: Callable[..., Any]) -> None:
        run(world.add_devices(2))
        cid = run(world.create(error_threshold={"count": 1}, retry_count=1, retry_interval_minutes=10))
        device_id = next(iter(run(world.attempts(cid))))
        run(world.report(cid, device_id, -1))
        assert run(world.tick(cid, NOW)).state == "running"
        # Ten minutes later the retry goes out; a second failure is final and trips the threshold.
        run(world.tick(cid, NOW + timedelta(minutes=10)))
        assert run(world.attempts(cid))[device_id].attempts == 2
        run(world.report(cid, device_id, -1))
        campaign = run(world.tick(cid, NOW + timedelta(minutes=11)))
        assert campaign.state == "paused"

    def test_resume_judges_only_new_failures(self, world: World, run: Callable[..., Any]) -> None:
        run(world.add_devices(3))
        cid = run(world.create(error_threshold={"count": 1}))
        first, second, third = run(world.attempts(cid))
        run(world.report(cid, first, -2))
        assert run(world.tick(cid, NOW)).state == "paused"

        async def resume(session: Any) -> Campaign:
            return await actions.resume(session, cid, NOW)

        assert run(world.run(resume)).state == "running"
        run(world.report(cid, second, 100))
        assert run(world.tick(cid, NOW)).state == "running"
        run(world.report(cid, third, -2))
        assert run(world.tick(cid, NOW)).state == "paused"


class TestDeliverOnConnect:
    def test_waits_until_the_device_listens(self, world: World, run: Callable[..., Any]) -> None:
        (device_id,) = run(world.add_devices(1))
        cid = run(world.create(offline="deliver_on_connect"))
        assert run(world.attempts(cid))[device_id].state == "pending"
        run(world.listen(device_id))
        run(world.tick(cid, NOW))
        assert run(world.attempts(cid))[device_id].state == "notified"
        assert run(world.notices()) == 1


class TestTimeout:
    def test_silence_since_the_last_sign_of_life(self, world: World, run: Callable[..., Any]) -> None:
        (device_id,) = run(world.add_devices(1))
        cid = run(world.create(timeout_minutes=5))
        notified_at = run(world.attempts(cid))[device_id].updated_at
        run(world.tick(cid, notified_at + timedelta(minutes=4)))
        assert run(world.attempts(cid))[device_id].state == "notified"
        run(world.tick(cid, notified_at + timedelta(minutes=5)))
        attempt = run(world.attempts(cid))[device_id]
        assert (attempt.state, attempt.failure_reason) == ("failed", "timeout")


def test_offline_devices_fail_at_push(world: World, run: Callable[..., Any]) -> None:
    run(world.add_devices(1, online=False))
    cid = run(world.create())
    (attempt,) = run(world.attempts(cid)).values()
    assert (attempt.state, attempt.failure_reason) == ("failed", "offline")


class TestFailureIsolation:
    def test_a_campaign_whose_step_fails_is_paused_and_the_others_go_on(
        self, world: World, run: Callable[..., Any]
    ) -> None:
        first, second = run(world.add_devices(2, online=True))
        later = {"start_at": (NOW + timedelta(minutes=1)).isoformat()}
        poisoned = run(world.create(device_ids=[first], schedule=later))
        healthy = run(world.create(device_ids=[second], schedule=later))

        # A row the API would refuse today (422), as an older version may have stored it.
        async def poison(session: Any) -> None:
            campaign = await session.get(Campaign, poisoned)
            campaign.timeout_minutes = 1e16

        run(world.run(poison))
        engine = RolloutEngine(world.database, 60, ManualClock(NOW + timedelta(minutes=2)))
        run(engine.tick())

        async def states(session: Any) -> dict[int, tuple[str, str | None]]:
            rows = await session.scalars(select(Campaign).where(Campaign.id.in_([poisoned, healthy])))
            return {c.id: (c.state, c.paused_reason) for c in rows}

        found = run(world.run(states))
        assert found[healthy][0] == "running"
        assert found[poisoned][0] == "paused"
        assert str(found[poisoned][1]).startswith("paused after an error in the rollout engine: OverflowError")
        assert {a.state for a in run(world.attempts(healthy)).values()} == {"notified"}


class TestBounds:
    @pytest.mark.parametrize(
        "fields",
        [
            {"timeout_minutes": 1e16},
            {"retry_interval_minutes": 1e9},
            {"max_per_minute": 2**31},
            {"min_finished": 2**40},
            {"error_threshold": {"count": 2**40}},
            {"groups": [float(n) for n in range(1, 102)]},
        ],
    )
    def test_numbers_beyond_their_bounds_are_refused(self, fields: dict[str, Any]) -> None:
        with pytest.raises(ValidationError):
            CampaignCreate.model_validate({"name": "c", "package_id": 1, **fields})


class TestWhoIsAdvanced:
    """An idle campaign costs nothing: it moves when its product is woken, unless the clock drives it."""

    def test_a_quiet_campaign_waits_for_a_wake_of_its_product(self, world: World, run: Callable[..., Any]) -> None:
        run(world.add_devices(1))
        cid = run(world.create(mode="dynamic"))
        engine = RolloutEngine(world.database, 60, ManualClock(NOW))
        run(engine.tick())  # the first tick looks at every campaign
        assert len(run(world.attempts(cid))) == 1
        run(world.add_devices(1))
        run(engine.tick())
        engine.wake(world.product_id + 1000)
        run(engine.tick())
        assert len(run(world.attempts(cid))) == 1
        engine.wake(world.product_id)
        run(engine.tick())
        assert len(run(world.attempts(cid))) == 2
        run(world.add_devices(1))
        engine.wake()
        run(engine.tick())
        assert len(run(world.attempts(cid))) == 3

    def test_a_clock_driven_campaign_moves_every_tick(self, world: World, run: Callable[..., Any]) -> None:
        run(world.add_devices(1))
        cid = run(world.create(mode="dynamic", timeout_minutes=30))
        engine = RolloutEngine(world.database, 60, ManualClock(NOW))
        run(engine.tick())
        run(world.add_devices(1))
        run(engine.tick())
        assert len(run(world.attempts(cid))) == 2


class TestPreloadedReports:
    """A batch of device reports loads its devices' open attempts and versions once (devices/inbox.py)."""

    def test_an_attempt_notified_after_the_preload_takes_the_reports(
        self, world: World, run: Callable[..., Any]
    ) -> None:
        (device_id,) = run(world.add_devices(1))
        run(world.listen(device_id))
        cid = run(world.create(schedule={"start_at": (NOW + timedelta(hours=1)).isoformat()}))

        async def batch(session: Any) -> int:
            await attempts.preload_open_attempts(session, [device_id])
            await rollout.advance(session, await get_campaign(session, cid), NOW + timedelta(hours=2))
            await attempts.progress_reported(session, device_id, None, 42, "half", True, NOW)
            attempt = await session.scalar(select(CampaignDevice).where(CampaignDevice.campaign_id == cid))
            return int(attempt.progress)

        assert run(world.run(batch)) == 42

    def test_a_finished_attempt_takes_no_more_reports(self, world: World, run: Callable[..., Any]) -> None:
        (device_id,) = run(world.add_devices(1))
        run(world.listen(device_id))
        cid = run(world.create())

        async def batch(session: Any) -> set[int]:
            await attempts.preload_open_attempts(session, [device_id])
            finished = await attempts.version_reported(session, device_id, None, "2.0.0", NOW)
            await attempts.progress_reported(session, device_id, None, 10, "late", True, NOW)
            return finished

        assert run(world.run(batch)) == {cid}
        assert run(world.attempts(cid))[device_id].state == "succeeded"

    def test_versions_reported_twice_in_one_batch_keep_one_row(self, world: World, run: Callable[..., Any]) -> None:
        (device_id,) = run(world.add_devices(1))

        async def batch(session: Any) -> list[str]:
            await registry.preload_versions(session, [device_id])
            await registry.record_version(session, device_id, "default", "1.0.0", NOW)
            await registry.record_version(session, device_id, "default", "1.0.1", NOW)
            await session.flush()
            return list(
                await session.scalars(select(DeviceVersion.version).where(DeviceVersion.device_id == device_id))
            )

        assert run(world.run(batch)) == ["1.0.1"]


class TestConcurrentWriters:
    """Reports of one attempt applied at the same time by two transactions (the inbox's batch, and a
    download that ends on another connection) must not undo each other: on PostgreSQL, where readers do
    not wait for writers, the second reads the attempt only once the first has committed."""

    def test_a_download_ending_while_a_failure_is_applied_keeps_the_failure(
        self, world: World, run: Callable[..., Any]
    ) -> None:
        (device_id,) = run(world.add_devices(1))
        run(world.listen(device_id))
        cid = run(world.create())
        attempt = run(world.attempts(cid))[device_id]
        assert (attempt.state, attempt.attempts) == ("notified", 1)

        async def race() -> None:
            async with world.database.transaction() as session:
                await attempts.progress_reported(session, device_id, None, -4, "flash write error", False, NOW)
                await session.flush()
                # The last byte went out meanwhile: the download's own transaction must wait for this one.
                ending = asyncio.ensure_future(
                    world.run(lambda other: attempts.download_finished(other, attempt.id, 1, NOW))
                )
                await asyncio.sleep(0.5)
                assert not ending.done()
            await ending

        run(race())
        after = run(world.attempts(cid))[device_id]
        assert (after.state, after.failure_reason) == ("failed", "flashing failed")
