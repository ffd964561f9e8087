"""The broker's lean per-connection parts behave as asyncio's own, without a deque or a waiting task each."""

from __future__ import annotations

import asyncio
import collections
from typing import Any

from skylift.broker.lean import DeliveryQueue, LeanQueue, Waiters, lean_event


def _deques(value: Any) -> list[str]:
    return [name for name, part in vars(value).items() if isinstance(part, collections.deque)]


def test_a_new_queue_holds_no_deque() -> None:
    async def scenario() -> None:
        queue = LeanQueue()
        assert queue.empty()
        assert _deques(queue) == []
        assert _deques(queue._finished) == []  # type: ignore[attr-defined]

    asyncio.run(scenario())


def test_items_come_out_in_the_order_they_went_in() -> None:
    async def scenario() -> list[int]:
        queue = LeanQueue()
        for item in range(5):
            queue.put_nowait(item)
        return [queue.get_nowait() for _ in range(5)]

    assert asyncio.run(scenario()) == [0, 1, 2, 3, 4]


def test_a_lean_event_wakes_its_waiters() -> None:
    async def scenario() -> list[bool]:
        event = lean_event(asyncio.Event())
        assert isinstance(event._waiters, Waiters)  # type: ignore[attr-defined]
        waiters = [asyncio.create_task(event.wait()) for _ in range(3)]
        await asyncio.sleep(0)
        assert not any(waiter.done() for waiter in waiters)
        event.set()
        return list(await asyncio.wait_for(asyncio.gather(*waiters), 1))

    assert asyncio.run(scenario()) == [True, True, True]


class TestDeliveryQueue:
    def test_messages_are_handed_on_one_at_a_time_in_order(self) -> None:
        async def scenario() -> list[str]:
            seen: list[str] = []

            async def deliver(message: str) -> None:
                seen.append(f"start {message}")
                await asyncio.sleep(0.01)
                seen.append(f"end {message}")

            queue = DeliveryQueue(deliver)
            queue.put_nowait("a")
            await queue.put("b")
            await asyncio.wait_for(queue.join(), 1)
            return seen

        assert asyncio.run(scenario()) == ["start a", "end a", "start b", "end b"]

    def test_no_task_waits_while_the_queue_is_empty(self) -> None:
        async def scenario() -> list[int]:
            before = len(asyncio.all_tasks())
            queue = DeliveryQueue(lambda message: asyncio.sleep(0))
            counts = [len(asyncio.all_tasks()) - before]
            queue.put_nowait("a")
            counts.append(len(asyncio.all_tasks()) - before)
            await asyncio.wait_for(queue.join(), 1)
            await asyncio.sleep(0)
            counts.append(len(asyncio.all_tasks()) - before)
            return counts

        assert asyncio.run(scenario()) == [0, 1, 0]

    def test_a_message_that_fails_does_not_stop_the_next(self) -> None:
        async def scenario() -> list[str]:
            seen: list[str] = []

            async def deliver(message: str) -> None:
                if message == "bad":
                    raise ValueError(message)
                seen.append(message)

            queue = DeliveryQueue(deliver)
            for message in ("bad", "good"):
                queue.put_nowait(message)
            await asyncio.wait_for(queue.join(), 1)
            queue.put_nowait("later")
            await asyncio.wait_for(queue.join(), 1)
            return seen

        assert asyncio.run(scenario()) == ["good", "later"]


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
