"""The device inbox over a real SQLite database, with a fake message handler."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from skylift.db.chunks import id_chunks
from skylift.db.migrate import upgrade_to_head
from skylift.db.session import Database
from skylift.devices import inbox as inbox_module
from skylift.devices.identity import DeviceIdentity, LoginStyle
from skylift.devices.inbox import Inbox
from skylift.devices.models import InboxMessage
from skylift.registry.models import Device, Product
from skylift.system.models import AuditEvent

NOW = datetime(2026, 12, 1, tzinfo=UTC)
Handled = list[tuple[int, bytes]]


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path / 'skylift.db'}"


async def with_devices(database: Database, count: int) -> list[DeviceIdentity]:
    await upgrade_to_head(database)
    async with database.transaction() as session:
        product = Product(name="p", product_key="pk")
        devices = [
            Device(name=f"d{n}", device_secret="s", access_token=f"token-{n}", product=product) for n in range(count)
        ]
        session.add_all(devices)
        await session.flush()
        return [
            DeviceIdentity(device.id, product.id, "pk", device.name, device.access_token, LoginStyle.TOKEN)
            for device in devices
        ]


def recording(handled: Handled, delay: float = 0.0) -> Callable[[DeviceIdentity, str, bytes], Awaitable[None]]:
    async def handle(identity: DeviceIdentity, _topic: str, payload: bytes) -> None:
        await asyncio.sleep(delay)
        handled.append((identity.device_id, payload))

    return handle


@asynccontextmanager
async def running(inbox: Inbox) -> Any:
    await inbox.start()
    try:
        yield inbox
    finally:
        await inbox.stop()


async def rows(database: Database) -> int:
    async with database.transaction() as session:
        return int(await session.scalar(select(func.count()).select_from(InboxMessage)) or 0)


class TestOrderAndFairness:
    def test_each_device_in_order_and_a_flooder_does_not_hold_others_back(self, database_url: str) -> None:
        async def scenario() -> Handled:
            database = Database(database_url)
            flooder, quiet = await with_devices(database, 2)
            handled: Handled = []
            inbox = Inbox(database, recording(handled))
            for n in range(300):
                inbox.append(flooder, "t", b"%d" % n, NOW)
            receipt = inbox.append(quiet, "t", b"q", NOW)
            async with running(inbox):
                await receipt
                while len(handled) < 301:
                    await asyncio.sleep(0.01)
            assert await rows(database) == 0
            await database.dispose()
            return handled

        handled = asyncio.run(scenario())
        assert [payload for _, payload in handled if payload != b"q"] == [b"%d" % n for n in range(300)]
        # Queued behind 300 messages of another device, the quiet device's message is applied second.
        assert [payload for _, payload in handled].index(b"q") <= 1


class TestCrash:
    def test_what_was_acknowledged_is_applied_once_after_a_crash(self, database_url: str) -> None:
        async def scenario() -> tuple[Handled, Handled, int]:
            database = Database(database_url)
            devices = await with_devices(database, 5)
            before: Handled = []
            inbox = Inbox(database, recording(before, delay=0.01))  # slow: most messages wait as rows
            await inbox.start()
            receipts = [inbox.append(devices[n % 5], "t", b"%d" % n, NOW) for n in range(100)]
            await asyncio.gather(*receipts)
            assert inbox._worker is not None
            inbox._worker.cancel()  # a crash: no drain, the cycle under way is rolled back
            await asyncio.gather(inbox._worker, return_exceptions=True)
            left = await rows(database)

            after: Handled = []
            async with running(Inbox(database, recording(after))):
                while len(after) < left:
                    await asyncio.sleep(0.01)
            assert await rows(database) == 0
            await database.dispose()
            return before, after, left

        before, after, left = asyncio.run(scenario())
        assert 0 < left < 100
        applied_before = before[: 100 - left]  # what the crash rolled back was handled but not kept
        for device in {device_id for device_id, _ in after}:
            kept = [payload for device_id, payload in applied_before + after if device_id == device]
            assert kept == sorted(kept, key=int)  # in the order the device sent them
        assert sorted(int(payload) for _, payload in applied_before + after) == list(range(100))


class TestReplicas:
    def test_a_replica_applies_only_its_own_rows_and_in_order_those_it_adopts(
        self, database_url: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        # Small chunks: the adopted rows are read in several statements and must still keep their order.
        monkeypatch.setattr(inbox_module, "id_chunks", partial(id_chunks, size=7))

        async def scenario() -> tuple[Handled, Handled, Handled, int]:
            database = Database(database_url)
            devices = await with_devices(database, 5)
            before: Handled = []
            stopped = Inbox(database, recording(before, delay=0.01), node="b")
            await stopped.start()
            await asyncio.gather(*(stopped.append(devices[n % 5], "t", b"%d" % n, NOW) for n in range(100)))
            assert stopped._worker is not None
            stopped._worker.cancel()  # b dies with rows recorded and not applied
            await asyncio.gather(stopped._worker, return_exceptions=True)
            left = await rows(database)

            at_start: Handled = []
            adopted: Handled = []
            async with running(Inbox(database, recording(at_start), node="a")) as taker:
                await asyncio.sleep(0.2)  # b's rows are not a's: nothing to replay at a's start
                taker._handler = recording(adopted)
                async with database.transaction() as session:
                    found = await session.scalars(select(InboxMessage.id).where(InboxMessage.node == "b"))
                    ids = list(found)
                await taker.adopt(ids)
                while len(adopted) < left:
                    await asyncio.sleep(0.01)
            assert await rows(database) == 0
            await database.dispose()
            return before, at_start, adopted, left

        before, at_start, adopted, left = asyncio.run(scenario())
        assert 0 < left < 100
        assert at_start == []
        applied_before = before[: 100 - left]
        for device in {device_id for device_id, _ in adopted}:
            kept = [payload for device_id, payload in applied_before + adopted if device_id == device]
            assert kept == sorted(kept, key=int)  # in the order the device sent them
        assert sorted(int(payload) for _, payload in applied_before + adopted) == list(range(100))


class TestFailures:
    def test_a_failing_message_undoes_only_itself(self, database_url: str) -> None:
        async def scenario() -> list[str]:
            database = Database(database_url)
            devices = await with_devices(database, 3)

            async def handle(identity: DeviceIdentity, _topic: str, payload: bytes) -> None:
                async with database.transaction() as session:
                    session.add(AuditEvent(actor="device", at=NOW, action=payload.decode(), target_type="device"))
                    await session.flush()
                    if payload == b"poison":
                        raise ValueError("cannot handle this")

            inbox = Inbox(database, handle)
            receipts = [inbox.append(devices[n % 3], "t", b"ok-%d" % n, NOW) for n in range(10)]
            receipts.append(inbox.append(devices[0], "t", b"poison", NOW))
            receipts += [inbox.append(devices[n % 3], "t", b"ok-%d" % n, NOW) for n in range(10, 20)]
            async with running(inbox):
                await asyncio.gather(*receipts)
                while len(inbox):
                    await asyncio.sleep(0.01)
            async with database.transaction() as session:
                actions = list(await session.scalars(select(AuditEvent.action).order_by(AuditEvent.id)))
            await database.dispose()
            return actions

        actions = asyncio.run(scenario())
        assert sorted(actions) == sorted(f"ok-{n}" for n in range(20))


class TestBackPressure:
    def test_a_full_device_is_read_again_once_half_of_it_is_applied(
        self, database_url: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setattr(inbox_module, "ROOM_PER_DEVICE", 10)

        async def scenario() -> None:
            database = Database(database_url)
            (device,) = await with_devices(database, 1)
            gate = asyncio.Event()

            async def handle(_identity: DeviceIdentity, _topic: str, _payload: bytes) -> None:
                await gate.wait()

            async with running(Inbox(database, handle)) as inbox:
                for n in range(12):
                    inbox.append(device, "t", b"%d" % n, NOW)
                waiting = asyncio.ensure_future(inbox.wait_for_room(device.device_id))
                await asyncio.sleep(0.1)
                assert not waiting.done()
                gate.set()
                await asyncio.wait_for(waiting, 5)
                assert inbox.backlog(device.device_id) <= 5
            await database.dispose()

        asyncio.run(scenario())


class TestPreparedCycles:
    def test_each_cycle_first_loads_for_the_devices_it_applies(self, database_url: str) -> None:
        async def scenario() -> tuple[list[set[int]], Handled, set[int]]:
            database = Database(database_url)
            devices = await with_devices(database, 3)
            prepared: list[set[int]] = []
            handled: Handled = []

            async def prepare(_session: Any, device_ids: set[int]) -> None:
                prepared.append(device_ids)

            inbox = Inbox(database, recording(handled), prepare)
            receipts = [inbox.append(devices[n % 3], "t", b"%d" % n, NOW) for n in range(9)]
            async with running(inbox):
                await asyncio.gather(*receipts)
                while len(inbox):
                    await asyncio.sleep(0.01)
            await database.dispose()
            return prepared, handled, {device.device_id for device in devices}

        prepared, handled, device_ids = asyncio.run(scenario())
        assert sorted(int(payload) for _, payload in handled) == list(range(9))
        assert set().union(*prepared) == device_ids
        # Every applied message's device was prepared for in a cycle before it was handled.
        assert all(any(device_id in ids for ids in prepared) for device_id, _ in handled)
