"""Each device's attempt: the state machine applied to rows, and what device reports do to them.

Devices' adapters (devices/) call these with plain ids and values; nothing here knows a topic or a
payload. A notice that becomes due is a row in the outbox (campaigns/outbox.py).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import object_session, selectinload
from sqlalchemy.orm.attributes import set_committed_value
from sqlalchemy.orm.util import identity_key

from skylift.campaigns import outbox
from skylift.campaigns.models import Campaign, CampaignDevice
from skylift.campaigns.queries import FINAL_STATES, IN_PROGRESS_STATES, OPEN_STATES, Reachability
from skylift.campaigns.state import (
    FINAL,
    Attempt,
    DeviceState,
    Downloaded,
    Event,
    Notified,
    Progressed,
    VersionReported,
    transition,
)
from skylift.db.base import table_of
from skylift.db.chunks import id_chunks
from skylift.packages.models import Package
from skylift.registry import service as registry

# Open attempts of the devices whose reports a batch applies, loaded at once (see `preload_open_attempts`).
_OPEN_KEY = "skylift_open_attempts"
_NEVER = datetime.min.replace(tzinfo=UTC)


async def preload_open_attempts(session: AsyncSession, device_ids: Collection[int]) -> None:
    """Load the attempts under way of these devices in one query: their reports in this transaction then
    find their attempt without a query each. Attempts that come under way later in the transaction
    join the set as they change (`apply_event`)."""
    known: dict[int, list[CampaignDevice]] = session.info.setdefault(_OPEN_KEY, {})
    wanted = sorted(set(device_ids) - known.keys())
    for chunk in id_chunks(wanted):
        rows = await session.scalars(
            select(CampaignDevice)
            .where(CampaignDevice.device_id.in_(chunk), CampaignDevice.state.in_(IN_PROGRESS_STATES))
            .order_by(CampaignDevice.id)
            .with_for_update(of=CampaignDevice)
            .execution_options(populate_existing=True)
        )
        for device_id in chunk:
            known[device_id] = []
        for row in rows:
            known[row.device_id].append(row)


def _remember_open(attempt: CampaignDevice) -> None:
    """An attempt came under way: a transaction that preloaded its device's open attempts sees it too."""
    session = object_session(attempt)
    known = session.info.get(_OPEN_KEY) if session is not None else None
    if known is None:
        return
    attempts = known.get(attempt.device_id)
    if attempts is not None and not any(a is attempt for a in attempts):
        attempts.append(attempt)


def apply_event(attempt: CampaignDevice, event: Event, now: datetime) -> Attempt | None:
    """Run the state machine on one attempt row at `now`; the new state, or None when nothing changed."""
    before = Attempt(
        state=DeviceState(attempt.state),
        progress=attempt.progress,
        step_desc=attempt.step_desc,
        failure_reason=attempt.failure_reason,
        attempts=attempt.attempts,
        awaiting_version_report=attempt.awaiting_version_report,
    )
    after = transition(before, event)
    if after is before:
        return None
    for name, value in _row_values(after, now, isinstance(event, Notified)).items():
        setattr(attempt, name, value)
    attempt.attempts = after.attempts
    if attempt.state in IN_PROGRESS_STATES:
        _remember_open(attempt)
    return after


def _row_values(after: Attempt, now: datetime, notified: bool) -> dict[str, Any]:
    """The columns an attempt's new state writes at `now`, its count of attempts aside."""
    values: dict[str, Any] = {
        "state": after.state.value,
        "progress": after.progress,
        "step_desc": after.step_desc,
        "failure_reason": after.failure_reason,
        "awaiting_version_report": after.awaiting_version_report,
        "updated_at": now,
        "finished_at": now if after.state in FINAL else None,
    }
    if notified:
        values["notified_at"] = now
    return values


# What a pending attempt becomes when notified: the state machine's answer for any pending attempt,
# which differs from one attempt to the next only in its count of attempts (one more).
_NOTIFIED = transition(Attempt(), Notified())


async def notify(session: AsyncSession, attempts: Sequence[Reachability], now: datetime) -> int:
    """Pending attempts become notified, and their notices rows in the outbox, in one transaction.

    Returns how many were notified. A fleet's attempts change in one UPDATE per 500 and their notices
    go out in one INSERT (through the ORM, 10,000 attempts took seconds). Attempts this transaction
    has loaded are told the new values, as if it had read them; one whose device's open attempts it
    preloaded joins them."""
    if not attempts:
        return 0
    await session.flush()  # changes still in memory are written before the rows change under them
    table = table_of(CampaignDevice)
    columns = _row_values(_NOTIFIED, now, notified=True)
    added = _NOTIFIED.attempts - Attempt().attempts
    changed: list[Reachability] = []
    for chunk in id_chunks([attempt.id for attempt in attempts]):
        result = await session.execute(
            update(table)
            .where(table.c.id.in_(chunk), table.c.state == DeviceState.PENDING.value)
            .values(**columns, attempts=table.c.attempts + added)
            .returning(table.c.id)
        )
        ids = set(result.scalars())
        changed += [attempt for attempt in attempts if attempt.id in ids]
    await _catch_up(session, changed, columns, added)
    # Only the attempts this statement changed get a notice (another replica may have got to one first).
    await outbox.enqueue(session, [(attempt.id, attempt.device_id) for attempt in changed], now)
    return len(changed)


async def _catch_up(
    session: AsyncSession, attempts: Sequence[Reachability], columns: dict[str, Any], added: int
) -> None:
    """Loaded attempts learn what `notify` wrote; preloaded open attempts gain the newly notified."""
    known: dict[int, list[CampaignDevice]] = session.info.get(_OPEN_KEY, {})
    unloaded = []
    for attempt in attempts:
        loaded = session.identity_map.get(identity_key(CampaignDevice, attempt.id))
        if isinstance(loaded, CampaignDevice):
            for name, value in columns.items():
                set_committed_value(loaded, name, value)
            set_committed_value(loaded, "attempts", loaded.attempts + added)
            _remember_open(loaded)
        elif attempt.device_id in known:
            unloaded.append(attempt.id)
    for chunk in id_chunks(unloaded):
        for fresh in await session.scalars(select(CampaignDevice).where(CampaignDevice.id.in_(chunk))):
            _remember_open(fresh)


def attempt_values(campaign: Campaign, package: Package, device_id: int, rank: int, now: datetime) -> dict[str, Any]:
    """The columns of a device's new pending attempt at the campaign's package (group 0 unless set)."""
    return {
        "campaign_id": campaign.id,
        "device_id": device_id,
        "module": package.module,
        "target_version": package.version,
        "state": DeviceState.PENDING.value,
        "rank": rank,
        "group_index": 0,
        "progress": 0,
        "step_desc": "",
        "failure_reason": None,
        "attempts": 0,
        "awaiting_version_report": False,
        "notified_at": None,
        "finished_at": None,
        "created_at": now,
        "updated_at": now,
    }


def new_attempt(campaign: Campaign, package: Package, device_id: int, rank: int, now: datetime) -> CampaignDevice:
    """A device's pending attempt at the campaign's package, not yet added to the session."""
    return CampaignDevice(**attempt_values(campaign, package, device_id, rank, now))


async def next_rank(session: AsyncSession, campaign: Campaign) -> int:
    """The rollout-order place of the next device to join the campaign."""
    return int(await session.scalar(select(func.count()).where(CampaignDevice.campaign_id == campaign.id)) or 0)


async def _open_attempts(session: AsyncSession, device_id: int, module: str | None) -> list[CampaignDevice]:
    preloaded = session.info.get(_OPEN_KEY, {}).get(device_id)
    if preloaded is not None:
        module_name = None if module is None else await registry.device_module(session, device_id, module)
        found = [
            a for a in preloaded if a.state in IN_PROGRESS_STATES and (module_name is None or a.module == module_name)
        ]
        # As the query below orders them: the attempt the device was notified for last first.
        return sorted(found, key=lambda a: (a.notified_at or _NEVER, a.id or 0), reverse=True)
    query = (
        select(CampaignDevice)
        .join(Campaign, Campaign.id == CampaignDevice.campaign_id)
        .where(CampaignDevice.device_id == device_id, CampaignDevice.state.in_(IN_PROGRESS_STATES))
        # The attempt the device was notified for last comes first.
        .order_by(CampaignDevice.notified_at.desc(), CampaignDevice.id.desc())
        .with_for_update(of=CampaignDevice)
        .execution_options(populate_existing=True)
    )
    if module is not None:
        query = query.where(CampaignDevice.module == await registry.device_module(session, device_id, module))
    return list((await session.scalars(query)).all())


async def version_reported(
    session: AsyncSession, device_id: int, module: str | None, version: str, now: datetime
) -> set[int]:
    """Record the device's version of the module and judge its attempts under way.

    Returns the campaigns in which an attempt finished. A restart before the download (another
    version, see campaigns/state.py) makes the attempt's notice due again: a new outbox row."""
    module_name = await registry.device_module(session, device_id, module)
    await registry.record_version(session, device_id, module_name, version, now)
    finished = set()
    for attempt in await _open_attempts(session, device_id, module_name):
        after = apply_event(attempt, VersionReported(version, attempt.target_version), now)
        if after is not None and after.redeliver:
            await outbox.enqueue(session, [(attempt.id, attempt.device_id)], now)
        if attempt.state in FINAL_STATES:
            finished.add(attempt.campaign_id)
    return finished


async def progress_reported(
    session: AsyncSession,
    device_id: int,
    module: str | None,
    step: int,
    desc: str,
    done_at_100: bool,
    now: datetime,
) -> set[int]:
    """Progress applies to the attempt the device was notified for last (of the module, when named)."""
    attempts = await _open_attempts(session, device_id, module)
    if not attempts:
        return set()
    apply_event(attempts[0], Progressed(step, desc, done_at_100), now)
    return {attempts[0].campaign_id} if attempts[0].state in FINAL_STATES else set()


async def download_finished(session: AsyncSession, attempt_id: int, attempt_number: int, now: datetime) -> None:
    """The server sent the last byte of the attempt's file: the device has it."""
    attempt = await session.get(CampaignDevice, attempt_id, with_for_update=True, populate_existing=True)
    if attempt is not None and attempt.attempts == attempt_number:
        apply_event(attempt, Downloaded(), now)


def _delivered_on_request(attempt: CampaignDevice) -> bool:
    # In progress: the device asks again (a reboot, a lost notice). Pending: a running campaign whose
    # current group includes it, if the campaign waits for devices to ask (no push) or to come back
    # (deliver on connect); other pending attempts are the rollout engine's to send.
    if attempt.state in IN_PROGRESS_STATES:
        return True
    campaign = attempt.campaign
    return (
        attempt.state == DeviceState.PENDING
        and campaign.state == "running"
        and attempt.group_index <= campaign.current_group
        and (not campaign.push or campaign.offline == "deliver_on_connect")
    )


async def offer(session: AsyncSession, device_id: int, module: str | None, now: datetime) -> CampaignDevice | None:
    """The device asks for its upgrade of `module`: the open attempt to describe to it, or None.

    A pending attempt of a campaign without push is delivered now (it becomes notified); an attempt
    already under way is described again and stays the same attempt. The answer is sent by the
    caller, in the dialect the device asked in."""
    attempts = (
        await session.scalars(
            select(CampaignDevice)
            .where(
                CampaignDevice.device_id == device_id,
                CampaignDevice.module == await registry.device_module(session, device_id, module),
                CampaignDevice.state.in_(OPEN_STATES),
            )
            .options(selectinload(CampaignDevice.campaign).selectinload(Campaign.package).selectinload(Package.files))
            .with_for_update(of=CampaignDevice)
            .execution_options(populate_existing=True)
        )
    ).all()
    candidates = [a for a in attempts if _delivered_on_request(a)]
    if not candidates:
        return None
    # The attempt under way (last notified) first; else the newest campaign's pending one.
    attempt = max(
        candidates,
        key=lambda a: (a.state != DeviceState.PENDING, a.notified_at.timestamp() if a.notified_at else 0.0, a.id),
    )
    if attempt.state == DeviceState.PENDING:
        apply_event(attempt, Notified(), now)
        await session.flush()
    return attempt


@dataclass(frozen=True)
class BlockSource:
    """A package file a device may fetch in blocks, and the attempt that finishing it moves."""

    attempt_id: int
    attempt_number: int
    storage_key: str
    size: int


async def block_source(session: AsyncSession, device_id: int, stream_id: int, file_id: int) -> BlockSource | None:
    """streamId is the device's campaign attempt, fileId a file of its package; anything else is None."""
    attempt = await session.scalar(
        select(CampaignDevice)
        .where(
            CampaignDevice.id == stream_id,
            CampaignDevice.device_id == device_id,
            CampaignDevice.state.in_(IN_PROGRESS_STATES),
        )
        .options(selectinload(CampaignDevice.campaign).selectinload(Campaign.package).selectinload(Package.files))
    )
    if attempt is None or attempt.campaign.protocol != "mqtt":
        return None
    file = next((f for f in attempt.campaign.package.files if f.id == file_id), None)
    if file is None:
        return None
    return BlockSource(attempt.id, attempt.attempts, file.storage_key, file.size)
