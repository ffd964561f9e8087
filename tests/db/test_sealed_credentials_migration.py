"""Migration 0008 seals the credentials of an existing database: nothing in clear stays in its files."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from alembic import command
from sqlalchemy import Connection, select, text

from skylift.db.migrate import alembic_config, upgrade_to_head
from skylift.db.session import Database
from skylift.kit import sealing
from skylift.registry.models import Device

TOKEN = "0123456789abcdef0123456789abcdef"
SECRET = "fedcba9876543210fedcba9876543210"
NOW = datetime(2026, 12, 5, 10, 0, tzinfo=UTC)


def _to(revision: str, url: str, down: bool = False) -> Callable[[Connection], None]:
    def run(connection: Connection) -> None:
        config = alembic_config(url)
        config.attributes["connection"] = connection
        (command.downgrade if down else command.upgrade)(config, revision)

    return run


async def _old_database(database: Database) -> None:
    async with database.engine.begin() as connection:
        await connection.run_sync(_to("0007", database.url))
        await connection.execute(
            text(
                "INSERT INTO products (id, name, description, product_key, notice_style, auto_upgrade_latest, "
                "created_at, updated_at) VALUES (1, 'p', '', 'a1key', 'alibaba', 0, :now, :now)"
            ),
            {"now": NOW},
        )
        await connection.execute(
            text(
                "INSERT INTO devices (id, product_id, name, access_token, device_secret, online, login_style, "
                "login_username, command_topic, connection_epoch, tags, enabled, listening, relaying, "
                "created_at, updated_at) VALUES (1, 1, 'd1', :token, :secret, 0, 'token', :token, "
                ":topic, 0, '[]', 1, 0, 0, :now, :now)"
            ),
            {"token": TOKEN, "secret": SECRET, "topic": f"command_send/{TOKEN}", "now": NOW},
        )
        await connection.execute(
            text(
                "INSERT INTO device_inbox (device_id, login_style, auto_subscribe, topic, payload, received_at) "
                "VALUES (1, 'token', 0, :topic, x'7b7d', :now)"
            ),
            {"topic": f"/ota/device/progress/{TOKEN}", "now": NOW},
        )


async def _migrate(path: Path) -> tuple[Device, str]:
    database = Database(f"sqlite+aiosqlite:///{path}")
    try:
        await _old_database(database)
        await upgrade_to_head(database)
        async with database.transaction() as session:
            device = (await session.scalars(select(Device))).one()
            topic = str(await session.scalar(text("SELECT topic FROM device_inbox")))
            return device, topic
    finally:
        await database.dispose()


def test_existing_credentials_are_sealed_and_still_work(tmp_path: Path) -> None:
    path = tmp_path / "skylift.db"
    device, inbox_topic = asyncio.run(_migrate(path))
    assert (device.access_token, device.device_secret) == (TOKEN, SECRET)
    assert device.login_username == TOKEN
    assert device.command_topic == f"command_send/{TOKEN}"
    assert device.token_digest == sealing.keyring().digest(TOKEN)
    assert inbox_topic == "/ota/device/progress/{access_token}"
    for file in tmp_path.iterdir():
        content = file.read_bytes()
        assert TOKEN.encode() not in content, file.name
        assert SECRET.encode() not in content, file.name


async def _round_trip(path: Path) -> tuple[str, str, str]:
    database = Database(f"sqlite+aiosqlite:///{path}")
    try:
        await _old_database(database)
        await upgrade_to_head(database)
        async with database.engine.begin() as connection:
            await connection.run_sync(_to("0007", database.url, down=True))
            row = (await connection.execute(text("SELECT access_token, device_secret FROM devices"))).one()
            topic = (await connection.execute(text("SELECT topic FROM device_inbox"))).scalar_one()
            return str(row[0]), str(row[1]), str(topic)
    finally:
        await database.dispose()


def test_the_migration_can_be_undone(tmp_path: Path) -> None:
    token, secret, topic = asyncio.run(_round_trip(tmp_path / "skylift.db"))
    assert (token, secret, topic) == (TOKEN, SECRET, f"/ota/device/progress/{TOKEN}")
