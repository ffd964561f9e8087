"""An import inserts its devices together: the statements it runs do not grow with its rows (a 5,000-device
import held SQLite's write lock for 16 s when each device cost four statements of its own)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from sqlalchemy import event, func, select

from skylift.db.migrate import upgrade_to_head
from skylift.db.session import Database
from skylift.registry.importing import import_devices
from skylift.registry.models import Device, Product


async def _import(url: str, sizes: list[int]) -> tuple[list[int], list[tuple[str, str | None, int]]]:
    database = Database(url)
    await upgrade_to_head(database)
    statements: list[str] = []

    def count(*args: Any) -> None:
        statements.append(str(args[2]))

    event.listen(database.engine.sync_engine, "before_cursor_execute", count)
    counts = []
    try:
        for n, size in enumerate(sizes):
            async with database.transaction() as session:
                product = Product(name=f"p{n}", product_key=f"key{n}")
                session.add(product)
                await session.flush()
                product_id = product.id
            rows: list[dict[str, Any]] = [{"name": "gw", "tags": ["edge"]}]
            rows += [{"name": f"sub-{i}", "gateway": "gw", "address": f"A{i}"} for i in range(size)]
            rows += [{"name": f"d-{i}"} for i in range(size)]
            statements.clear()
            async with database.transaction() as session:
                created = await import_devices(session, product_id, rows)
                assert [device.name for device in created] == [row["name"] for row in rows]
                assert all(device.versions == [] and device.product.id == product_id for device in created)
                assert all(device.enabled and device.created_at is not None for device in created)
                ids = {device.name: device.id for device in created}
                stored_ids = await session.execute(
                    select(Device.name, Device.id).where(Device.product_id == product_id)
                )
                assert {name: device_id for name, device_id in stored_ids.all()} == ids
                gateway = created[0]
                assert {device.gateway_id for device in created[1 : size + 1]} == {gateway.id}
                by_token = await session.scalar(select(Device).where(Device.token_digest == created[-1].token_digest))
                assert by_token is not None
                assert by_token.access_token == created[-1].access_token
            counts.append(len(statements))
        async with database.reading() as session:
            gateway_id = await session.scalar(select(Device.id).where(Device.name == "gw", Device.product_id == 1))
            stored = (
                await session.execute(
                    select(Device.name, Device.address, func.count())
                    .where(Device.product_id == 1)
                    .group_by(Device.gateway_id == gateway_id)
                    .order_by(Device.name)
                )
            ).tuples()
            summary = [(name, address, total) for name, address, total in stored]
        return counts, summary
    finally:
        await database.dispose()


def test_the_statements_of_an_import_do_not_grow_with_its_rows(tmp_path: Path) -> None:
    counts, summary = asyncio.run(_import(f"sqlite+aiosqlite:///{tmp_path / 'skylift.db'}", [10, 200]))
    small, large = counts
    # 401 devices against 21: at most a few more pages of the same INSERTs, not statements per device.
    assert large - small <= 6, counts
    assert sum(total for _, _, total in summary) == 21  # the first import: a gateway, 10 sub-devices, 10 devices
    assert sorted(total for _, _, total in summary) == [10, 11]
