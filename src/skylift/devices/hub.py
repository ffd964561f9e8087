"""The app side of the broker: authenticates devices, tracks their connections, handles their messages.

A device's messages go through its inbox (devices/inbox.py): each is acknowledged once it is durably
recorded, then handled one at a time in the order the device sent it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Awaitable, Callable, Sequence
from functools import partial

from sqlalchemy.ext.asyncio import AsyncSession

from skylift.campaigns import attempts, outbox, rollout
from skylift.db.session import Database, after_commit, before_commit
from skylift.devices import credentials, mqtt_blocks, requests
from skylift.devices import service as device_service
from skylift.devices.dialects import alink, eztcloud, ota
from skylift.devices.dialects.base import (
    BlockRequested,
    MalformedMessage,
    ProgressReported,
    UpgradeRequested,
    VersionReported,
)
from skylift.devices.identity import DeviceIdentity
from skylift.devices.inbox import Inbox, deferred_in_batches
from skylift.devices.notices import Notifier, parse_grant
from skylift.devices.topics import Route, command_topic, gateway_command_topic, route, topic_matches, upgrade_topic
from skylift.kit import metrics
from skylift.kit.clock import Clock, SystemClock
from skylift.kit.coalesce import Coalescer
from skylift.packages.storage import LocalStorage
from skylift.registry import service as registry_service

log = logging.getLogger(__name__)

_SETTLE_KEY = "skylift_campaigns_to_settle"

Publisher = Callable[[str, bytes], Awaitable[None]]
Disconnector = Callable[[int], Awaitable[None]]
# Called when a device began to listen for its notices (a waiting notice can go out now).
# Told the product of a device that began to listen (its campaigns may have a notice for it).
ListeningListener = Callable[[int | None], None]


class DeviceHub:
    def __init__(
        self,
        database: Database,
        notifier: Notifier,
        max_payload_bytes: int,
        storage: LocalStorage | None = None,
        clock: Clock | None = None,
        node: str = "main",
    ) -> None:
        self.database = database
        self.node = node  # this replica: its broker holds the connections it records
        self.clock = clock or SystemClock()
        self.storage = storage  # package files, for downloads over MQTT
        self.notifier = notifier
        self.max_payload_bytes = max_payload_bytes
        self.inbox = Inbox(database, self.handle, self._prepare, node)
        # Whether a device listens is kept in the database (devices.listening), where every replica sees it.
        self.on_listening: list[ListeningListener] = []
        # Wakes the rollout engine for one product's campaigns (None: all of them).
        self.wake_engine: Callable[[int | None], None] | None = None
        self._publisher: Publisher | None = None
        self._disconnector: Disconnector | None = None
        self._logins = Coalescer(self._log_in, "device logins")
        self._connects = Coalescer(self._connect, "connection marks")
        self._disconnects = Coalescer(self._disconnect, "disconnection marks")

    def attach_publisher(self, publisher: Publisher, disconnector: Disconnector | None = None) -> None:
        self._publisher = deferred_in_batches(publisher)
        self._disconnector = disconnector

    async def disconnect(self, device_id: int) -> None:
        """Close a device's live connection, if it has one (after its credentials were revoked)."""
        if self._disconnector is not None:
            await self._disconnector(device_id)

    async def publish(self, topic: str, payload: bytes) -> None:
        if self._publisher is None:
            raise RuntimeError("no broker link attached")
        await self._publisher(topic, payload)

    async def authenticate(
        self, username: str | None, password: str | None, client_id: str | None
    ) -> DeviceIdentity | None:
        return await self._logins(credentials.Login(username, password, client_id))

    async def connected(self, identity: DeviceIdentity) -> int:
        """Record a live connection; its epoch tells a stale disconnect apart."""
        return await self._connects(identity)

    async def disconnected(self, identity: DeviceIdentity, epoch: int) -> None:
        await self._disconnects((identity.device_id, epoch))

    # A fleet that connects at once logs in, connects and leaves in shared transactions (kit/coalesce.py).

    async def _log_in(self, logins: Sequence[credentials.Login]) -> list[DeviceIdentity | None]:
        # A login only reads: it never waits for SQLite's writer (the fleet's reports, connection marks).
        async with self.database.reading() as session:
            return await credentials.authenticate_many(session, logins)

    async def _connect(self, identities: Sequence[DeviceIdentity]) -> list[int]:
        # A new connection hears nothing until it subscribes again (clean sessions start empty), or the
        # broker tells what it holds already (a kept session, the broker's own `_ss=1` subscriptions).
        async with self.database.transaction() as session:
            epochs = await device_service.mark_connected(session, identities, self.clock.now(), self.node)
        for product_id in {identity.product_id for identity in identities}:
            self._wake_engine(product_id)
        return epochs

    async def _disconnect(self, connections: Sequence[tuple[int, int]]) -> list[None]:
        now = self.clock.now()
        async with self.database.transaction() as session:
            for device_id, epoch in connections:
                await device_service.mark_disconnected(session, device_id, epoch, now)
        return [None] * len(connections)

    async def download_finished(self, grant: str) -> None:
        parsed = parse_grant(grant)
        if parsed is None:
            return
        async with self.database.transaction() as session:
            await attempts.download_finished(session, *parsed, self.clock.now())

    def submit(self, identity: DeviceIdentity, topic: str, payload: bytes) -> asyncio.Future[bool]:
        """Take a device's message; synchronous so that arrival order is kept. The future is done once
        the message is durably recorded (True) or refused (False): only then may the device hear its
        PUBACK. The message is handled later, in order with the device's other messages."""
        if len(payload) > self.max_payload_bytes:
            where = route(topic)
            self._refuse(identity, where.kind if where is not None else "unknown", topic, "payload too large")
            metrics.REFUSED_MESSAGES.labels(reason="payload too large").inc()
            refused: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
            refused.set_result(False)
            return refused
        return self.inbox.append(identity, topic, payload, self.clock.now())

    def subscribed(self, identity: DeviceIdentity, topic_filter: str) -> None:
        """The device subscribed: from now on it can hear what is sent to it (ordered with its messages)."""
        self.inbox.enqueue(identity.device_id, partial(self._on_subscribed, identity, topic_filter), "subscription")

    def unsubscribed(self, identity: DeviceIdentity, remaining: Sequence[str]) -> asyncio.Future[None]:
        """The device unsubscribed; `remaining` is every filter it still has (ordered with its messages).
        The future is done once that is committed: only then may the device hear its UNSUBACK."""
        job = partial(self._on_unsubscribed, identity, tuple(remaining))
        return self.inbox.enqueue(identity.device_id, job, "unsubscription")

    def _wake_engine(self, product_id: int | None) -> None:
        if self.wake_engine is not None:
            self.wake_engine(product_id)

    async def _on_subscribed(self, identity: DeviceIdentity, topic_filter: str) -> None:
        upgrade, hears_command, relays = _covered(identity, topic_filter)
        command = command_topic(identity.username)
        if not (upgrade or hears_command or relays):
            return
        async with self.database.transaction() as session:
            listening = []
            if upgrade or hears_command:
                # A filter covering both channels, such as `#`, leaves the recorded one as it was.
                channel = None if upgrade else command
                await device_service.listens(
                    session, identity.device_id, channel, keep_channel=upgrade and hears_command
                )
                listening.append(identity.device_id)
            if relays:
                listening += await device_service.relays(session, identity.device_id)
            # A notice that went to an earlier connection and was never answered goes out again.
            await outbox.send_again_if_unheard(session, listening)
            # A gateway's sub-devices may belong to other products.
            product_id = None if relays else identity.product_id
            # Told once the device is seen listening: in a batch of the inbox, after the batch commits.
            after_commit(session, partial(self._now_listening, product_id))

    async def _now_listening(self, product_id: int | None) -> None:
        for listener in self.on_listening:
            listener(product_id)

    async def _on_unsubscribed(self, identity: DeviceIdentity, remaining: tuple[str, ...]) -> None:
        # Whether any filter it keeps still covers where its notices (or its sub-devices') go.
        covered = [_covered(identity, topic_filter) for topic_filter in remaining]
        hears = any(upgrade or command for upgrade, command, _ in covered)
        relays = any(relays for _, _, relays in covered)
        if hears and relays:
            return
        async with self.database.transaction() as session:
            await device_service.hears_less(session, identity.device_id, notices=hears, relays=relays)

    async def handle(self, identity: DeviceIdentity, topic: str, payload: bytes) -> None:
        where = route(topic)
        if where is not None and where.family == "eztcloud":
            if where.topic_id == identity.username:
                await self._handle_eztcloud(identity, topic, where, payload)
            return
        if where is None or not identity.owns_topic_id(where.topic_id):
            return
        kind = where.kind
        parser = (ota.PARSERS if where.family == "ota" else alink.PARSERS).get(kind)
        if parser is None:
            return
        if len(payload) > self.max_payload_bytes:
            self._refuse(identity, kind, topic, "payload too large")
            return
        try:
            event = parser(payload)
        except MalformedMessage as exc:
            self._refuse(identity, kind, topic, exc.reason)
            return
        metrics.DEVICE_MESSAGES.labels(kind=kind).inc()
        if isinstance(event, UpgradeRequested | BlockRequested):
            await self._answer(identity, where, event)
            return
        if isinstance(event, ProgressReported) and where.topic_id != identity.access_token:
            event = dataclasses.replace(event, done_at_100=False)  # seed 004: the version report decides
        await self.apply(identity, event)

    async def _handle_eztcloud(self, identity: DeviceIdentity, topic: str, where: Route, payload: bytes) -> None:
        """EZtCloud (003) messages; a gateway's messages name one of its own sub-devices and act for it."""
        kind = where.kind
        if len(payload) > self.max_payload_bytes:
            self._refuse(identity, kind, topic, "payload too large")
            return
        try:
            message = eztcloud.PARSERS[kind](payload)
        except MalformedMessage as exc:
            self._refuse(identity, kind, topic, exc.reason)
            return
        device, address = identity, None
        if isinstance(message, eztcloud.SubDeviceMessage):
            async with self.database.transaction() as session:
                sub_device = await credentials.sub_device(session, identity.device_id, message.address)
            if sub_device is None:
                self._refuse(identity, kind, topic, f"{message.address!r} is not a sub-device of this gateway")
                return
            device, address, message = sub_device, message.address, message.event
        metrics.DEVICE_MESSAGES.labels(kind=kind).inc()
        match message:
            case eztcloud.PropertiesReported(values=values):
                now = self.clock.now()
                async with self.database.transaction() as session:
                    recorded, touched = await device_service.properties_reported(session, device, values, now)
                    self._settle(session, touched)
                if recorded:
                    self._wake_engine(device.product_id)  # a dynamic campaign may now match this device
            case UpgradeRequested():
                command = await requests.answer_check(self.database, self.notifier, device, message, self.clock.now())
                await self.publish(where.reply_topic, eztcloud.render(command, address))
            case ProgressReported():
                await self.apply(device, message)
            case eztcloud.Noted(what=what):
                log.debug("%s from device %s on %s changes nothing", what, device.device_id, topic)

    async def apply(self, identity: DeviceIdentity, event: VersionReported | ProgressReported) -> None:
        """A version or progress report, from MQTT or the HTTP device API."""
        now = self.clock.now()
        async with self.database.transaction() as session:
            if isinstance(event, VersionReported):
                finished = await attempts.version_reported(
                    session, identity.device_id, event.module, event.version, now
                )
            else:
                finished = await attempts.progress_reported(
                    session, identity.device_id, event.module, event.step, event.desc, event.done_at_100, now
                )
            self._settle(session, finished)
        if isinstance(event, VersionReported):
            self._wake_engine(identity.product_id)  # a dynamic campaign may now match this device

    @staticmethod
    async def _prepare(session: AsyncSession, device_ids: set[int]) -> None:
        """Before a batch of device messages: what their reports read, loaded in one query each."""
        await attempts.preload_open_attempts(session, device_ids)
        await registry_service.preload_versions(session, device_ids)

    def _settle(self, session: AsyncSession, finished: set[int]) -> None:
        """Campaigns react to finished attempts once, just before the transaction commits: in the inbox's
        batch, a fleet's reports then cost one reaction per campaign, not one each."""
        if not finished:
            return
        pending: set[int] | None = session.info.get(_SETTLE_KEY)
        if pending is None:
            pending = session.info[_SETTLE_KEY] = set()
            before_commit(session, partial(self._settle_pending, session))
        pending |= finished

    async def _settle_pending(self, session: AsyncSession) -> None:
        await rollout.settle(session, session.info.pop(_SETTLE_KEY, set()), self.clock.now())

    async def _answer(self, identity: DeviceIdentity, where: Route, event: UpgradeRequested | BlockRequested) -> None:
        """Requests are answered on the device's reply topic, after their transaction has committed."""
        if isinstance(event, UpgradeRequested):
            answer = await requests.answer(self.database, self.notifier, identity, where, event, self.clock.now())
            await self.publish(*answer)
            return
        if self.storage is None:
            raise RuntimeError("no package storage attached for downloads over MQTT")
        order = mqtt_blocks.crc_order(where.family)
        served = await mqtt_blocks.serve(self.database, self.storage, identity, event, order)
        await self.publish(where.reply_topic, served.payload)
        if served.finished is not None:
            async with self.database.transaction() as session:
                await attempts.download_finished(session, *served.finished, self.clock.now())

    @staticmethod
    def _refuse(identity: DeviceIdentity, kind: str, topic: str, reason: str) -> None:
        metrics.MALFORMED_MESSAGES.labels(kind=kind).inc()
        log.warning("malformed %s message from device %s on %s: %s", kind, identity.device_id, topic, reason)

    async def drain(self) -> None:
        """Handle the device messages still queued (used at shutdown; what is left is replayed at start)."""
        await self.inbox.stop()


def _covered(identity: DeviceIdentity, topic_filter: str) -> tuple[bool, bool, bool]:
    """Whether a filter covers the device's upgrade topic, its command channel, and its gateway relay topic
    (a wildcard filter counts as a subscription to each of the device's topics it covers)."""
    return (
        any(topic_matches(topic_filter, upgrade_topic(t)) for t in identity.topic_ids),
        topic_matches(topic_filter, command_topic(identity.username)),
        topic_matches(topic_filter, gateway_command_topic(identity.username)),
    )
