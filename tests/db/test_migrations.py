"""The Alembic migrations build exactly the schema the models describe."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Connection

from skylift.db.migrate import alembic_config, upgrade_to_head
from skylift.db.session import Database
from skylift.models import Base
from skylift_testkit import database_url_for


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
    # On PostgreSQL too, when the suite runs there (.ci/with-postgresql): its types differ from SQLite's.
    url = database_url_for(tmp_path / "data") or f"sqlite+aiosqlite:///{tmp_path / 'skylift.db'}"
    differences = asyncio.run(_migrate_and_compare(url))
    assert differences == []


NOW = "2026-01-01 00:00:00.000000+00:00"
ROWS = [
    "INSERT INTO products (id, name, description, product_key, notice_style, created_at, updated_at)"
    f" VALUES (1, 'p', '', 'a1key', 'alibaba', '{NOW}', '{NOW}')",
    "INSERT INTO devices (id, product_id, name, access_token, device_secret, online, connection_epoch,"
    f" created_at, updated_at) VALUES (1, 1, 'd', 'token', 'secret', 0, 0, '{NOW}', '{NOW}')",
    "INSERT INTO device_versions (id, device_id, module, version, reported_at)"
    f" VALUES (1, 1, 'default', '1.0', '{NOW}')",
    "INSERT INTO packages (id, product_id, module, name, version, type, source_version, sign_method,"
    " verify_required, enabled, description, created_at, updated_at)"
    f" VALUES (1, 1, 'default', 'fw', '1.1.0', 'full', '', 'MD5', 0, 1, '', '{NOW}', '{NOW}')",
    "INSERT INTO package_files (id, package_id, position, name, size, md5, sha256, storage_key)"
    " VALUES (1, 1, 0, 'fw.bin', 3, 'm', 's', 'k.bin')",
    "INSERT INTO campaigns (id, product_id, package_id, name, type, protocol, mode, push, source_versions, ext_data,"
    f" state, created_at, updated_at) VALUES (1, 1, 1, 'c', 'upgrade', 'http', 'static', 1, '[]', '{{}}', 'finished',"
    f" '{NOW}', '{NOW}')",
    "INSERT INTO campaign_devices (id, campaign_id, device_id, module, target_version, state, progress, step_desc,"
    f" attempts, awaiting_version_report, created_at, updated_at) VALUES (1, 1, 1, 'default', '1.1.0', 'succeeded',"
    f" 100, '', 1, 0, '{NOW}', '{NOW}')",
]
COUNTED = ["products", "devices", "device_versions", "packages", "package_files", "campaigns", "campaign_devices"]


def _upgrade_to(connection: Connection, url: str, revision: str) -> None:
    config = alembic_config(url)
    config.attributes["connection"] = connection
    command.upgrade(config, revision)


async def _upgrade_with_rows(url: str, revision: str) -> dict[str, int]:
    database = Database(url)
    try:
        async with database.engine.begin() as connection:
            await connection.run_sync(_upgrade_to, url, revision)
            for row in ROWS:
                await connection.exec_driver_sql(row)
        await upgrade_to_head(database)
        async with database.engine.connect() as connection:
            counts = {
                table: int((await connection.exec_driver_sql(f"SELECT count(*) FROM {table}")).scalar_one())
                for table in COUNTED
            }
            counts["foreign keys enforced"] = int(
                (await connection.exec_driver_sql("PRAGMA foreign_keys")).scalar_one()
            )
            return counts
    finally:
        await database.dispose()


@pytest.mark.parametrize("revision", ["0001", "0004", "0007"])
def test_upgrading_a_database_in_use_keeps_every_row(tmp_path: Path, revision: str) -> None:
    # SQLite rebuilds a table to alter it: with foreign keys enforced, dropping the old table would
    # cascade into every table that references it.
    counts = asyncio.run(_upgrade_with_rows(f"sqlite+aiosqlite:///{tmp_path / 'skylift.db'}", revision))
    assert counts == dict.fromkeys([*COUNTED, "foreign keys enforced"], 1)
