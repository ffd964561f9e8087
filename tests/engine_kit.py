"""The rollout engine's world for tests on a real database: a product, a package, devices, campaigns,
and the engine stepped by hand with a clock in the test's hand (see tests/campaigns)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

from sqlalchemy import func, select

from skylift.campaigns import actions, attempts, rollout
from skylift.campaigns.models import Campaign, CampaignDevice, NoticeOutbox
from skylift.campaigns.queries import get_campaign
from skylift.campaigns.schemas import CampaignCreate
from skylift.campaigns.state import Progressed
from skylift.db.migrate import upgrade_to_head
from skylift.db.session import Database
from skylift.devices.identity import LoginStyle
from skylift.packages.models import Package, PackageFile
from skylift.registry import service as registry
from skylift.registry.models import Device
from skylift.registry.schemas import DeviceCreate, ProductCreate

T = TypeVar("T")
NOW = datetime(2026, 11, 23, 12, 0, 30, tzinfo=UTC)


@dataclass
class World:
    database: Database
    product_id: int = 0
    package_id: int = 0
    serial: int = 0

    async def run(self, work: Callable[[Any], Awaitable[T]]) -> T:
        async with self.database.transaction() as session:
            return await work(session)

    async def add_devices(self, count: int, online: bool = True) -> list[int]:
        async def add(session: Any) -> list[int]:
            ids = []
            for _ in range(count):
                self.serial += 1
                device = await registry.create_device(
                    session, DeviceCreate(product_id=self.product_id, name=f"device-{self.serial}")
                )
                device.online = online
                device.login_style = LoginStyle.TOKEN.value
                ids.append(device.id)
            return ids

        return await self.run(add)

    async def create(self, **fields: Any) -> int:
        data = CampaignCreate.model_validate({"name": "c", "package_id": self.package_id, **fields})

        async def create(session: Any) -> int:
            return (await actions.create_campaign(session, data, NOW, https_available=False)).id

        return await self.run(create)

    async def tick(self, campaign_id: int, now: datetime) -> Campaign:
        async def step(session: Any) -> Campaign:
            campaign = await get_campaign(session, campaign_id)
            await rollout.advance(session, campaign, now)
            return campaign

        return await self.run(step)

    async def notices(self) -> int:
        """Notices written to the outbox (the relay's to send)."""

        async def count(session: Any) -> int:
            return int(await session.scalar(select(func.count()).select_from(NoticeOutbox)) or 0)

        return await self.run(count)

    async def listen(self, device_id: int) -> None:
        """The device subscribed where its notices go (as the devices' hub records it)."""

        async def mark(session: Any) -> None:
            (await session.get(Device, device_id)).listening = True

        await self.run(mark)

    async def attempts(self, campaign_id: int) -> dict[int, CampaignDevice]:
        async def load(session: Any) -> dict[int, CampaignDevice]:
            rows = await session.scalars(select(CampaignDevice).where(CampaignDevice.campaign_id == campaign_id))
            return {row.device_id: row for row in rows}

        return await self.run(load)

    async def report(self, campaign_id: int, device_id: int, step: int) -> None:
        async def apply(session: Any) -> None:
            attempt = await session.scalar(
                select(CampaignDevice).where(
                    CampaignDevice.campaign_id == campaign_id, CampaignDevice.device_id == device_id
                )
            )
            attempts.apply_event(attempt, Progressed(step), NOW)

        await self.run(apply)


async def build_world(url: str) -> World:
    """A migrated database holding one product and one package."""
    database = Database(url)
    await upgrade_to_head(database)
    world = World(database=database)

    async def seed(session: Any) -> None:
        product = await registry.create_product(session, ProductCreate(name="engine"))
        package = Package(
            product_id=product.id,
            module="default",
            name="fw",
            version="2.0.0",
            type="full",
            sign_method="MD5",
        )
        package.files.append(
            PackageFile(position=0, name="fw.bin", size=10, md5="0" * 32, sha256="0" * 64, storage_key="k")
        )
        session.add(package)
        await session.flush()
        world.product_id, world.package_id = product.id, package.id

    await world.run(seed)
    return world
