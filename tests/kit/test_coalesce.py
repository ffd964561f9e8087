"""Calls that arrive together share a batch; a bad call fails only itself."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from skylift.kit.coalesce import Coalescer


class Doubler:
    """Doubles numbers in batches, records each batch, refuses negative numbers (the whole batch)."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.release = asyncio.Event()
        self.release.set()

    async def __call__(self, numbers: Sequence[int]) -> list[int]:
        self.batches.append(list(numbers))
        await self.release.wait()
        if any(n < 0 for n in numbers):
            raise ValueError("negative")
        return [2 * n for n in numbers]


def held(max_batch: int = 500) -> tuple[Doubler, Coalescer[int, int]]:
    """A coalescer whose batches wait until the test releases them."""
    doubler = Doubler()
    doubler.release.clear()
    return doubler, Coalescer(doubler, "doubling", max_batch=max_batch)


async def arrive(doubling: Coalescer[int, int], *numbers: int) -> list[asyncio.Task[int]]:
    """Calls made together, then a turn of the loop for them to be queued."""
    calls = [asyncio.ensure_future(doubling(n)) for n in numbers]
    await asyncio.sleep(0)
    return calls


def test_a_lone_call_runs_at_once() -> None:
    asyncio.run(_a_lone_call_runs_at_once())


async def _a_lone_call_runs_at_once() -> None:
    doubler = Doubler()
    assert await Coalescer(doubler, "doubling")(4) == 8
    assert doubler.batches == [[4]]


def test_calls_that_arrive_while_a_batch_runs_make_up_the_next_one() -> None:
    asyncio.run(_calls_that_arrive_while_a_batch_runs_make_up_the_next_one())


async def _calls_that_arrive_while_a_batch_runs_make_up_the_next_one() -> None:
    doubler, doubling = held(max_batch=3)
    (first,) = await arrive(doubling, 1)
    later = await arrive(doubling, *range(2, 7))
    doubler.release.set()
    assert await first == 2
    assert await asyncio.gather(*later) == [4, 6, 8, 10, 12]
    assert doubler.batches == [[1], [2, 3, 4], [5, 6]]


def test_a_bad_call_fails_only_itself() -> None:
    asyncio.run(_a_bad_call_fails_only_itself())


async def _a_bad_call_fails_only_itself() -> None:
    doubler, doubling = held()
    (first,) = await arrive(doubling, 1)
    good, bad = await arrive(doubling, 2, -3)
    doubler.release.set()
    assert await first == 2
    assert await good == 4
    with pytest.raises(RuntimeError, match="doubling failed"):
        await bad
    assert doubler.batches == [[1], [2, -3], [2], [-3]]


def test_a_caller_that_gives_up_leaves_the_batch_running() -> None:
    asyncio.run(_a_caller_that_gives_up_leaves_the_batch_running())


async def _a_caller_that_gives_up_leaves_the_batch_running() -> None:
    doubler, doubling = held()
    (gave_up,) = await arrive(doubling, 5)
    gave_up.cancel()
    (stays,) = await arrive(doubling, 6)
    doubler.release.set()
    assert await stays == 12
    assert doubler.batches == [[5], [6]]
