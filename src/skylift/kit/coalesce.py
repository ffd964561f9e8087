"""Calls that arrive together share one round of work: a fleet's logins, one transaction for many.

A `Coalescer` runs its batch function at once for the first call; calls that arrive while a batch is
running wait and make up the next one, so an idle server answers without delay and a busy one does
its work in ever larger batches (a group commit). When a batch raises, each of its calls is tried on
its own, so that one bad call fails only itself.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")

BatchRunner = Callable[[Sequence[T]], Awaitable[Sequence[R]]]


class Coalescer(Generic[T, R]):
    def __init__(self, run: BatchRunner[T, R], name: str, max_batch: int = 500) -> None:
        self._run = run
        self.name = name
        self.max_batch = max_batch
        self._waiting: list[tuple[T, asyncio.Future[R]]] = []
        self._task: asyncio.Task[None] | None = None

    async def __call__(self, item: T) -> R:
        answer: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._waiting.append((item, answer))
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._drain(), name=self.name)
        # A caller that gives up (its connection closed) leaves its item in the batch; nobody reads it.
        return await asyncio.shield(answer)

    async def _drain(self) -> None:
        while self._waiting:
            calls, self._waiting = self._waiting[: self.max_batch], self._waiting[self.max_batch :]
            try:
                results = await self._run([item for item, _ in calls])
                if len(results) != len(calls):
                    raise RuntimeError(f"{len(results)} results for {len(calls)} calls")
            except Exception:
                if len(calls) > 1:
                    # Tried again one at a time: a single bad call must not fail the others.
                    log.warning("a batch of %d %s failed; each is tried on its own", len(calls), self.name)
                    for call in calls:
                        await self._run_one(*call)
                else:
                    log.exception("%s failed", self.name)
                    _fail(calls[0][1], RuntimeError(f"{self.name} failed"))
                continue
            for (_, answer), result in zip(calls, results, strict=True):
                if not answer.done():
                    answer.set_result(result)

    async def _run_one(self, item: T, answer: asyncio.Future[R]) -> None:
        try:
            (result,) = await self._run([item])
        except Exception:
            log.exception("%s failed", self.name)
            _fail(answer, RuntimeError(f"{self.name} failed"))
        else:
            if not answer.done():
                answer.set_result(result)


def _fail(answer: asyncio.Future[R], error: BaseException) -> None:
    if not answer.done():
        answer.set_exception(error)
