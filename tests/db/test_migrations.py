"""The Alembic migrations build exactly the schema the models describe."""

from __future__ import annotations

import asyncio
from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Connection

from skylift.db.migrate import upgrade_to_head
from skylift.db.session import Database
from skylift.models import Base


def _differences(connection: Connection) -> list[object]:
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    return list(compare_metadata(context, Base.metadata))


async def _migrate_and_compare(url: str) -> list[object]:
    database = Database(url)
    try:
        await upgrade_to_head(database)
        await upgrade_to_head(database)  # running again at the next start is a no-op
        async with database.engine.connect() as connection:
            return await connection.run_sync(_differences)
    finally:
        await database.dispose()


def test_models_and_migrations_agree(tmp_path: Path) -> None:
    differences = asyncio.run(_migrate_and_compare(f"sqlite+aiosqlite:///{tmp_path / 'skylift.db'}"))
    assert differences == []
