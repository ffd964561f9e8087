"""A background loop: one asyncio task that does a round of work every interval, or sooner when woken.

The rollout engine and the notice relay are such loops. A round that raises is logged and the loop
goes on; wakes that arrive during a round make the next round start at once (after `gap` seconds,
which coalesces a storm of wakes into one round).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from abc import ABC, abstractmethod

log = logging.getLogger(__name__)


class Loop(ABC):
    name = "loop"

    def __init__(self, interval_seconds: float, gap_seconds: float = 0.0) -> None:
        self.interval = interval_seconds
        self.gap = gap_seconds
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @abstractmethod
    async def round(self) -> None:
        """One round of the loop's work."""

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name=self.name)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def wake(self) -> None:
        """Run a round soon: something changed."""
        self._wake.set()

    async def _run(self) -> None:
        while True:
            self._wake.clear()
            try:
                await self.round()
            except Exception:
                log.exception("a round of the %s failed; it tries again", self.name)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self.interval)
            if self.gap:
                await asyncio.sleep(self.gap)
