"""A list of campaigns answers each one as reading it alone does, in as many statements for a hundred
campaigns as for three (a page of the list holds up to 1,000)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

from sqlalchemy import event

from engine_kit import NOW, World
from skylift.campaigns import actions, policy, results
from skylift.campaigns.models import Campaign
from skylift.campaigns.queries import get_campaign
from skylift.campaigns.schemas import CampaignOut


@contextmanager
def statements(world: World) -> Iterator[list[str]]:
    """The SQL statements the world's database runs inside the block."""
    seen: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        seen.append(statement)

    engine = world.database.engine.sync_engine
    event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", record)


def listed(world: World, run: Callable[..., Any], ids: list[int]) -> tuple[list[CampaignOut], list[CampaignOut], int]:
    """The campaigns as the list shows them, as each read alone shows it, and the list's statements."""

    async def both(session: Any) -> tuple[list[CampaignOut], list[CampaignOut], int]:
        campaigns: list[Campaign] = [await get_campaign(session, i) for i in ids]
        with statements(world) as seen:
            together = await results.campaign_outs(session, campaigns, NOW)
        alone = [await results.campaign_out(session, c, NOW) for c in campaigns]
        return together, alone, len(seen)

    answer: tuple[list[CampaignOut], list[CampaignOut], int] = run(world.run(both))
    return answer


def test_every_kind_of_wait_in_one_list(world: World, run: Callable[..., Any]) -> None:
    opens = NOW.replace(second=0, microsecond=0) + timedelta(hours=2)
    window = {"start": f"{opens:%H:%M}", "end": f"{opens + timedelta(hours=1):%H:%M}", "tz": "UTC"}
    kinds: dict[str, dict[str, Any]] = {
        "free": {},
        "start": {"schedule": {"start_at": (NOW + timedelta(days=2)).isoformat()}},
        "window": {"schedule": {"window": window}},
        "paced": {"max_per_minute": 1},
        "cron": {"schedule": {"cron": "0 3 * * *"}},
        "paused": {},
    }
    # Each campaign its own three devices: a device takes part in one active campaign per module.
    created = {
        name: run(world.create(device_ids=run(world.add_devices(3)), **fields)) for name, fields in kinds.items()
    }
    for name in ("free", "paced"):
        run(world.tick(created[name], NOW))

    async def pause(session: Any) -> None:
        await actions.pause(session, created["paused"])

    run(world.run(pause))
    together, alone, _ = listed(world, run, list(created.values()))
    assert together == alone
    reasons = {name: out.waiting_reason for name, out in zip(created, together, strict=True)}
    assert reasons["free"] is None
    assert reasons["start"] == "waiting for its start time"
    assert (reasons["window"] or "").startswith("outside its window")
    assert reasons["paced"] == "pacing: at most 1 notices a minute"
    assert reasons["cron"] == "waiting for its next scheduled run"
    assert reasons["paused"] is not None
    by_name = dict(zip(created, together, strict=True))
    assert by_name["free"].counts == {"notified": 3}
    assert by_name["paced"].counts == {"notified": 1, "pending": 2}
    assert by_name["paced"].next_run_at == NOW + policy.PACING_WINDOW


def test_statements_do_not_grow_with_the_list(world: World, run: Callable[..., Any]) -> None:
    ids = [run(world.create(device_ids=run(world.add_devices(2)), max_per_minute=1)) for _ in range(40)]
    for campaign_id in ids[:20]:
        run(world.tick(campaign_id, NOW))
    _, _, few = listed(world, run, ids[:3])
    _, _, many = listed(world, run, ids)
    assert many == few <= 4
