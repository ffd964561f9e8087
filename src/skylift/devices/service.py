"""Device connection state (online, listening, where notices go) and EZtCloud property reports."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from datetime import datetime

from sqlalchemy import bindparam, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from skylift.campaigns import attempts
from skylift.db.base import table_of
from skylift.db.chunks import id_chunks
from skylift.devices.identity import DeviceIdentity
from skylift.devices.topics import gateway_command_topic
from skylift.kit import sealing
from skylift.kit.versions import same_version
from skylift.registry import service as registry
from skylift.registry.models import Device, DeviceVersion, Module


def _sealed(value: str | None) -> str | None:
    """For bulk updates, which bypass the model's sealed attributes."""
    return None if value is None else sealing.keyring().seal(value)


async def properties_reported(
    session: AsyncSession, identity: DeviceIdentity, values: Mapping[str, str], now: datetime
) -> tuple[int, set[int]]:
    """An EZtCloud property report: each module whose version property is present reports that version.

    EZtCloud devices may report their properties periodically, so a version that has not changed
    since the last report is only refreshed: it does not judge an attempt under way (it would fail as
    `version mismatch` while the device is still downloading). A changed version is a version report.
    Returns how many module versions were recorded, and the campaigns in which an attempt finished."""
    modules = (await session.scalars(select(Module).where(Module.product_id == identity.product_id))).all()
    known: dict[str, str] = {
        module: version
        for module, version in (
            await session.execute(
                select(DeviceVersion.module, DeviceVersion.version).where(DeviceVersion.device_id == identity.device_id)
            )
        ).tuples()
    }
    recorded, finished = 0, set()
    for module in modules:
        version = values.get(module.version_property) if module.version_property else None
        if version is None:
            continue
        recorded += 1
        if module.name in known and same_version(version, known[module.name]):
            await registry.record_version(session, identity.device_id, module.name, version, now)
        else:
            finished |= await attempts.version_reported(session, identity.device_id, module.name, version, now)
    return recorded, finished


async def mark_seen(session: AsyncSession, device_id: int, now: datetime) -> None:
    """An HTTP device is not connected, but it was heard from."""
    await session.execute(update(Device).where(Device.id == device_id).values(last_seen_at=now))


async def mark_connected(
    session: AsyncSession, identities: Sequence[DeviceIdentity], now: datetime, node: str
) -> list[int]:
    """Record new live connections on `node`'s broker (a fleet's, in a few statements); returns each one's
    epoch, in order, so that a stale disconnect can be told apart (0 for a device that no longer exists)."""
    table = table_of(Device)
    ids = [identity.device_id for identity in identities]
    # A new connection hears nothing until it subscribes (a clean session starts empty); the broker
    # reports the subscriptions a kept session, or `_ss=1`, already has.
    await session.execute(
        update(table)
        .where(table.c.id == bindparam("connected_id"))
        .values(
            connection_epoch=table.c.connection_epoch + 1,
            online=True,
            listening=False,
            relaying=False,
            last_seen_at=now,
            node=node,
            # This connection logged in with the credentials in force: nothing to close.
            disconnect_requested=False,
            login_style=bindparam("style"),
            login_username_sealed=bindparam("username"),
        ),
        [
            {"connected_id": i.device_id, "style": i.login_style.value, "username": _sealed(i.username)}
            for i in identities
        ],
    )
    epochs: dict[int, int] = {}
    gateways: set[int] = set()
    for chunk in id_chunks(sorted(set(ids))):
        current = await session.execute(select(Device.id, Device.connection_epoch).where(Device.id.in_(chunk)))
        epochs.update(current.tuples().all())
        gateways.update(await session.scalars(select(Device.gateway_id).where(Device.gateway_id.in_(chunk)).distinct()))
    # Sub-devices are reachable exactly while their gateway is connected, on the username it logged in with.
    for identity in identities:
        if identity.device_id in gateways:
            await session.execute(
                update(Device)
                .where(Device.gateway_id == identity.device_id)
                .values(
                    # A sub-device's connection is its gateway's: a new one for each of the gateway's.
                    connection_epoch=Device.connection_epoch + 1,
                    online=True,
                    listening=False,
                    node=node,
                    command_topic_sealed=_sealed(gateway_command_topic(identity.username)),
                )
            )
    # A device that connected twice in the batch: its earlier connection had the epoch before.
    later = Counter(ids)
    answers = []
    for device_id in ids:
        later[device_id] -= 1
        answers.append(epochs[device_id] - later[device_id] if device_id in epochs else 0)
    return answers


async def mark_disconnected(session: AsyncSession, device_id: int, epoch: int, now: datetime) -> bool:
    """Mark the device offline unless a newer connection is live; True when this was the live one."""
    result = await session.execute(
        update(Device)
        .where(Device.id == device_id, Device.connection_epoch == epoch)
        .values(online=False, listening=False, relaying=False, last_seen_at=now)
    )
    current = bool(getattr(result, "rowcount", 0))
    if current:
        await session.execute(
            update(Device).where(Device.gateway_id == device_id).values(online=False, listening=False)
        )
    return current


async def listens(session: AsyncSession, device_id: int, channel: str | None, keep_channel: bool = False) -> None:
    """The device subscribed where its notices go: it can hear them now (seen by every replica).

    `channel` records where (the last subscription wins): EZtCloud's `command_send/{username}`, or
    None for its upgrade topic; with `keep_channel` (a filter such as `#` covering both) the recorded
    one stays. Sub-devices hear through their gateway (see `relays`)."""
    values: dict[str, object] = {"listening": True}
    if not keep_channel:
        values["command_topic_sealed"] = _sealed(channel)
    await session.execute(
        update(Device)
        .where(Device.id == device_id, Device.gateway_id.is_(None), Device.online.is_(True))
        .values(values)
    )


async def hears_less(session: AsyncSession, device_id: int, notices: bool, relays: bool) -> None:
    """The device unsubscribed: with what it still hears, it may no longer hear its notices (`notices`
    False), or no longer relay its sub-devices' (`relays` False). A notice waits until it listens again."""
    if not notices:
        await session.execute(update(Device).where(Device.id == device_id).values(listening=False))
    if not relays:
        result = await session.execute(
            update(Device).where(Device.id == device_id, Device.relaying.is_(True)).values(relaying=False)
        )
        if getattr(result, "rowcount", 0):
            await session.execute(update(Device).where(Device.gateway_id == device_id).values(listening=False))


async def relays(session: AsyncSession, gateway_id: int) -> list[int]:
    """The gateway subscribed to `gateway_command_send`: its sub-devices can hear their notices now
    (returned)."""
    await session.execute(update(Device).where(Device.id == gateway_id).values(relaying=True))
    listening = await session.execute(
        update(Device)
        .where(Device.gateway_id == gateway_id, Device.online.is_(True))
        .values(listening=True)
        .returning(Device.id)
    )
    return list(listening.scalars())


async def mark_offline_on(session: AsyncSession, node: str) -> None:
    """`node`'s broker holds no connection (it is starting, or it stopped and is taken over). A device
    that never connected since replicas were recorded (no node) counts as the starting node's."""
    await session.execute(
        update(Device)
        .where(
            (Device.node == node) | Device.node.is_(None),
            Device.online.is_(True) | Device.listening.is_(True) | Device.relaying.is_(True),
        )
        .values(online=False, listening=False, relaying=False)
    )
