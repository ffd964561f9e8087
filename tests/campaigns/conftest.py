"""Fixtures of the engine tests: a world on a real database and an event loop to step it."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest

from engine_kit import World, build_world
from skylift_testkit import database_url_for

T = TypeVar("T")


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


@pytest.fixture
def world(tmp_path: Path, loop: asyncio.AbstractEventLoop) -> Iterator[World]:
    # PostgreSQL when the suite runs there (.ci/with-postgresql): concurrent writers differ most there.
    url = database_url_for(tmp_path / "data") or f"sqlite+aiosqlite:///{tmp_path / 'engine.db'}"

    world = loop.run_until_complete(build_world(url))
    yield world
    loop.run_until_complete(world.database.dispose())


@pytest.fixture
def run(loop: asyncio.AbstractEventLoop) -> Callable[[Awaitable[T]], T]:
    return loop.run_until_complete
