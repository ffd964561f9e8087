"""Queries that run every second on every replica read through an index, not through every device."""

from __future__ import annotations

import asyncio
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.dialects import sqlite

from skylift.db.migrate import upgrade_to_head
from skylift.db.session import Database
from skylift.devices import nodes


async def _plan(url: str) -> str:
    database = Database(url)
    query = nodes.waiting_disconnects("main").compile(dialect=sqlite.dialect(), compile_kwargs={"literal_binds": True})
    try:
        await upgrade_to_head(database)
        async with database.reading() as session:
            rows = await session.execute(text(f"EXPLAIN QUERY PLAN {query}"))
            return " | ".join(str(row[-1]) for row in rows)
    finally:
        await database.dispose()


def test_connections_to_close_are_found_through_the_partial_index(tmp_path: Path) -> None:
    plan = asyncio.run(_plan(f"sqlite+aiosqlite:///{tmp_path / 'skylift.db'}"))
    assert "USING INDEX ix_devices_node_disconnect_requested" in plan, plan
