"""A lean queue behaves as asyncio's own and makes its waiting lists only when it needs them."""

from __future__ import annotations

import asyncio

from skylift.broker.lean import LeanQueue


def test_a_new_queue_holds_no_waiting_lists() -> None:
    async def scenario() -> None:
        queue = LeanQueue()
        assert queue.empty()
        assert not {"_getters", "_putters", "_finished"} & set(vars(queue))

    asyncio.run(scenario())


def test_a_getter_waits_for_a_put() -> None:
    async def scenario() -> list[int]:
        queue = LeanQueue()
        getter = asyncio.create_task(queue.get())
        await asyncio.sleep(0)
        assert not getter.done()
        queue.put_nowait(1)
        queue.put_nowait(2)
        return [await getter, await queue.get()]

    assert asyncio.run(scenario()) == [1, 2]


def test_join_waits_for_every_task_done() -> None:
    async def scenario() -> list[str]:
        queue = LeanQueue()
        await queue.join()  # nothing unfinished: returns at once
        seen: list[str] = []
        await queue.put("a")
        joiner = asyncio.create_task(queue.join())
        await asyncio.sleep(0)
        seen.append("joined" if joiner.done() else "waiting")
        await queue.get()
        queue.task_done()
        await asyncio.wait_for(joiner, 1)
        seen.append("joined")
        return seen

    assert asyncio.run(scenario()) == ["waiting", "joined"]


def test_a_bounded_queue_makes_a_putter_wait() -> None:
    async def scenario() -> list[int]:
        queue = LeanQueue(maxsize=1)
        await queue.put(1)
        putter = asyncio.create_task(queue.put(2))
        await asyncio.sleep(0)
        assert not putter.done()
        first = await queue.get()
        await asyncio.wait_for(putter, 1)
        return [first, await queue.get()]

    assert asyncio.run(scenario()) == [1, 2]
