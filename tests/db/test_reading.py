"""A unit of work that only reads never waits for SQLite's writer, and sees the last commit."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from sqlalchemy import insert, select

from skylift.db.base import table_of
from skylift.db.migrate import upgrade_to_head
from skylift.db.session import Database, WriteInReadingSession
from skylift.registry.models import Product


async def _scenario(url: str) -> tuple[list[str], list[str], bool]:
    database = Database(url)
    await upgrade_to_head(database)
    products = table_of(Product)
    try:
        async with database.transaction() as session:
            await session.execute(insert(products).values(name="committed", product_key="k1"))
        writing = asyncio.Event()
        release = asyncio.Event()

        async def long_writer() -> None:
            async with database.transaction() as session:
                await session.execute(insert(products).values(name="uncommitted", product_key="k2"))
                writing.set()
                await release.wait()

        writer = asyncio.create_task(long_writer())
        await writing.wait()
        # The writer holds the write lock: a reader answers at once, with what was committed.
        async with asyncio.timeout(2), database.reading() as session:
            seen = list(await session.scalars(select(Product.name)))
        # A second writer has to wait for the first one.
        second = asyncio.create_task(_write(database, "second"))
        await asyncio.sleep(0.3)
        second_waited = not second.done()
        release.set()
        await writer
        await second
        async with database.reading() as session:
            after = sorted(await session.scalars(select(Product.name)))
        return seen, after, second_waited
    finally:
        await database.dispose()


async def _write(database: Database, name: str) -> None:
    async with database.transaction() as session:
        await session.execute(insert(table_of(Product)).values(name=name, product_key=f"k-{name}"))


def test_a_reader_neither_waits_for_the_writer_nor_sees_its_uncommitted_rows(tmp_path: Path) -> None:
    seen, after, second_waited = asyncio.run(_scenario(f"sqlite+aiosqlite:///{tmp_path / 'skylift.db'}"))
    assert seen == ["committed"]
    assert second_waited  # the writers still take turns
    assert after == ["committed", "second", "uncommitted"]


async def _add_in_reading(database: Database, name: str, flush: bool) -> None:
    async with database.reading() as session:
        session.add(Product(name=name, product_key=f"k-{name}"))
        if flush:
            await session.flush()


async def _changes_refused(url: str) -> tuple[list[str], list[str]]:
    """Changing rows in a reading session fails, at its flush or at its end, and commits nothing."""
    database = Database(url)
    await upgrade_to_head(database)
    refused: list[str] = []
    try:
        with pytest.raises(WriteInReadingSession):
            await _add_in_reading(database, "flushed", flush=True)
        refused.append("at its flush")
        with pytest.raises(WriteInReadingSession):
            await _add_in_reading(database, "unflushed", flush=False)
        refused.append("at its end")
        async with database.reading() as session:
            return refused, list(await session.scalars(select(Product.name)))
    finally:
        await database.dispose()


def test_a_change_in_a_reading_session_is_refused_not_lost_silently(tmp_path: Path) -> None:
    refused, names = asyncio.run(_changes_refused(f"sqlite+aiosqlite:///{tmp_path / 'skylift.db'}"))
    assert refused == ["at its flush", "at its end"]
    assert names == []
