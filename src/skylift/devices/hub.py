"""The app side of the broker: authenticates devices, tracks their connections, handles their messages.

Messages from one device are handled one at a time in the order the broker received them (amqtt
runs plugin hooks as independent tasks, so ordering must be restored here).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from skylift.db.session import Database
from skylift.devices import credentials
from skylift.devices import service as device_service
from skylift.devices.dialects import ota
from skylift.devices.dialects.base import MalformedMessage
from skylift.devices.identity import DeviceIdentity
from skylift.devices.notices import Notifier, parse_grant
from skylift.devices.topics import split_ota_topic
from skylift.kit import metrics

log = logging.getLogger(__name__)

MAX_QUEUED_PER_DEVICE = 1000
Publisher = Callable[[str, bytes], Awaitable[None]]


class DeviceHub:
    def __init__(self, database: Database, notifier: Notifier, max_payload_bytes: int) -> None:
        self.database = database
        self.notifier = notifier
        self.max_payload_bytes = max_payload_bytes
        self._inboxes: dict[int, asyncio.Queue[tuple[DeviceIdentity, str, bytes]]] = {}
        self._workers: set[asyncio.Task[None]] = set()
        self._publisher: Publisher | None = None

    def attach_publisher(self, publisher: Publisher) -> None:
        self._publisher = publisher
        self.notifier.publish = self.publish

    async def publish(self, topic: str, payload: bytes) -> None:
        if self._publisher is None:
            raise RuntimeError("no broker link attached")
        await self._publisher(topic, payload)
        if "/upgrade/" in topic:
            metrics.NOTICES_SENT.inc()

    async def authenticate(
        self, username: str | None, password: str | None, client_id: str | None
    ) -> DeviceIdentity | None:
        async with self.database.transaction() as session:
            return await credentials.authenticate(session, username, password, client_id)

    async def connected(self, identity: DeviceIdentity) -> int:
        async with self.database.transaction() as session:
            return await device_service.mark_connected(session, identity)

    async def disconnected(self, identity: DeviceIdentity, epoch: int) -> None:
        async with self.database.transaction() as session:
            await device_service.mark_disconnected(session, identity.device_id, epoch)

    async def download_finished(self, grant: str) -> None:
        parsed = parse_grant(grant)
        if parsed is None:
            return
        async with self.database.transaction() as session:
            await device_service.download_finished(session, *parsed)

    def submit(self, identity: DeviceIdentity, topic: str, payload: bytes) -> None:
        """Queue a device's message; synchronous so that arrival order is kept."""
        inbox = self._inboxes.get(identity.device_id)
        if inbox is None:
            inbox = asyncio.Queue(maxsize=MAX_QUEUED_PER_DEVICE)
            self._inboxes[identity.device_id] = inbox
            worker = asyncio.get_running_loop().create_task(self._drain(identity.device_id, inbox))
            self._workers.add(worker)
            worker.add_done_callback(self._workers.discard)
        try:
            inbox.put_nowait((identity, topic, payload))
        except asyncio.QueueFull:
            metrics.DROPPED_MESSAGES.labels(reason="device queue full").inc()
            log.warning("device %s sends faster than it can be handled; message dropped", identity.device_id)

    async def _drain(self, device_id: int, inbox: asyncio.Queue[tuple[DeviceIdentity, str, bytes]]) -> None:
        while True:
            try:
                identity, topic, payload = inbox.get_nowait()
            except asyncio.QueueEmpty:
                del self._inboxes[device_id]
                return
            try:
                await self.handle(identity, topic, payload)
            except Exception:
                log.exception("handling a message from device %s on %s failed", device_id, topic)

    async def handle(self, identity: DeviceIdentity, topic: str, payload: bytes) -> None:
        parts = split_ota_topic(topic)
        kind = parts[0] if parts else "other"
        if parts is None or kind not in ota.PARSERS or not identity.owns_topic_id(parts[1]):
            return
        if len(payload) > self.max_payload_bytes:
            self._refuse(identity, kind, topic, "payload too large")
            return
        try:
            event = ota.parse(kind, payload)
        except MalformedMessage as exc:
            self._refuse(identity, kind, topic, exc.reason)
            return
        metrics.DEVICE_MESSAGES.labels(kind=kind).inc()
        async with self.database.transaction() as session:
            await device_service.handle(session, identity, event)

    @staticmethod
    def _refuse(identity: DeviceIdentity, kind: str, topic: str, reason: str) -> None:
        metrics.MALFORMED_MESSAGES.labels(kind=kind).inc()
        log.warning("malformed %s message from device %s on %s: %s", kind, identity.device_id, topic, reason)

    async def drain(self) -> None:
        """Wait until every queued device message has been handled (used at shutdown)."""
        while self._workers:
            await asyncio.gather(*list(self._workers), return_exceptions=True)
