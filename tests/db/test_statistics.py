"""A table that grows by a bulk write gets fresh statistics on PostgreSQL once the write commits: its
planner would otherwise take it for the nearly empty table autovacuum last saw (up to a minute ago)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import insert, text

from skylift.db.base import table_of
from skylift.db.migrate import upgrade_to_head
from skylift.db.session import BULK_ROWS, Database, grew
from skylift.devices.models import InboxMessage
from skylift_testkit import database_url_for

NOW = datetime(2026, 12, 7, tzinfo=UTC)


def _rows(count: int) -> list[dict[str, object]]:
    return [
        {
            "device_id": n,
            "login_style": "token",
            "auto_subscribe": False,
            "topic": "t",
            "payload": b"{}",
            "received_at": NOW,
        }
        for n in range(count)
    ]


async def _estimates(url: str) -> tuple[float, float]:
    """The planner's row estimate of the table after a write just below the bulk size, then after one of it."""
    database = Database(url)
    table = table_of(InboxMessage)
    estimate = text("SELECT reltuples FROM pg_class WHERE relname = :name")
    try:
        await upgrade_to_head(database)
        seen = []
        for count in (BULK_ROWS - 1, BULK_ROWS):
            async with database.transaction() as session:
                await session.execute(insert(table), _rows(count))
                grew(session, table.name, count)
            async with database.reading() as session:
                seen.append(float((await session.execute(estimate, {"name": table.name})).scalar_one()))
        return seen[0], seen[1]
    finally:
        await database.dispose()


def test_a_bulk_write_refreshes_its_tables_statistics(tmp_path: Path) -> None:
    url = database_url_for(tmp_path / "data")
    if url is None:
        pytest.skip("PostgreSQL only (SQLite plans without statistics): .ci/with-postgresql pytest tests/db")
    small, bulk = asyncio.run(_estimates(url))
    assert small < 0  # never analyzed: a smaller write leaves the statistics to autovacuum
    assert bulk == 2 * BULK_ROWS - 1
