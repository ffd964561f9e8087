"""Many simulated devices: in this process on one event loop, or spread over worker processes.

Whatever runs them, each device's happenings come back to the caller as `(index, Happening)` and are
tallied in `Tally`, which a display and the final verdict read.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import queue
import signal
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.synchronize import Event as ProcessEvent
from typing import Any

from skylift.simulator.behaviour import Behaviour
from skylift.simulator.device import DevicePlayer, Happening, Phase, PlayerSettings
from skylift.simulator.fetch import download_client
from skylift.simulator.protocol import Credentials, Dialect

Sink = Callable[[int, Happening], None]
# Devices of one process that connect at once; the others wait until these listen.
CONNECT_WINDOW = 64
# Downloads at once per process (keep-alive connections to Skylift's HTTP port).
HTTP_CONNECTIONS = 64


@dataclass(frozen=True)
class DeviceSpec:
    index: int
    credentials: Credentials
    dialect: Dialect
    behaviour: Behaviour


@dataclass
class DeviceView:
    spec: DeviceSpec
    phase: Phase = Phase.CONNECTING
    text: str = ""
    version: str = ""
    listened: bool = False  # has been ready (connected, reported, subscribed) at least once
    upgrades: int = 0
    failures: int = 0


@dataclass
class Tally:
    """What every device is doing now, from the happenings it reported."""

    devices: dict[int, DeviceView] = field(default_factory=dict)
    on_change: Callable[[], None] | None = None

    @classmethod
    def of(cls, specs: list[DeviceSpec], version: str) -> Tally:
        return cls({s.index: DeviceView(s, version=version) for s in specs})

    def apply(self, index: int, happening: Happening) -> None:
        view = self.devices[index]
        view.phase, view.text, view.version = happening.phase, happening.text, happening.version
        if happening.phase in (Phase.READY, Phase.UPGRADED):
            view.listened = True
        if happening.phase is Phase.UPGRADED:
            view.upgrades += 1
        elif happening.phase is Phase.FAILED:
            view.failures += 1
        if self.on_change is not None:
            self.on_change()

    def phases(self) -> Counter[Phase]:
        return Counter(view.phase for view in self.devices.values())

    def up(self) -> bool:
        """Every device that is to connect has listened once (or cannot go on)."""
        return all(v.listened or v.phase in (Phase.OFFLINE, Phase.ERROR) for v in self.devices.values())


async def play(specs: list[DeviceSpec], settings: PlayerSettings, sink: Sink, stop: asyncio.Event) -> None:
    """Run every device of `specs` on this event loop until `stop` is set."""
    gate = asyncio.Semaphore(CONNECT_WINDOW)
    async with download_client(HTTP_CONNECTIONS) as http:
        players = [
            DevicePlayer(s.credentials, s.dialect, settings, http, _bind(sink, s.index), s.behaviour, gate)
            for s in specs
        ]
        await asyncio.gather(*(player.run(stop) for player in players))


def _bind(sink: Sink, index: int) -> Callable[[Happening], None]:
    return lambda happening: sink(index, happening)


class Fleet:
    """Devices in this process (`processes` 1) or in worker processes; `stop()` ends them all."""

    def __init__(self, specs: list[DeviceSpec], settings: PlayerSettings, sink: Sink, processes: int = 1) -> None:
        self._specs = specs
        self._settings = settings
        self._sink = sink
        self._processes = max(1, min(processes, len(specs) or 1))
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._workers: list[multiprocessing.process.BaseProcess] = []
        self._stop_workers: ProcessEvent | None = None
        self._reader: threading.Thread | None = None

    def start(self) -> None:
        if self._processes == 1:
            self._task = asyncio.create_task(play(self._specs, self._settings, self._sink, self._stop))
            return
        context = multiprocessing.get_context("spawn")
        events: multiprocessing.Queue[tuple[int, Happening] | None] = context.Queue()
        self._stop_workers = context.Event()
        for number in range(self._processes):
            share = self._specs[number :: self._processes]
            worker = context.Process(
                target=run_worker,
                args=(share, self._settings, events, self._stop_workers),
                name=f"skylift-simulate-{number}",
                daemon=True,
            )
            worker.start()
            self._workers.append(worker)
        loop = asyncio.get_running_loop()
        self._reader = threading.Thread(target=self._forward, args=(events, loop), daemon=True)
        self._reader.start()

    def _forward(self, events: multiprocessing.Queue[tuple[int, Happening] | None], loop: Any) -> None:
        finished = 0
        while finished < len(self._workers):
            try:
                item = events.get(timeout=1.0)
            except queue.Empty:
                if not any(worker.is_alive() for worker in self._workers):
                    return
                continue
            if item is None:
                finished += 1
            else:
                loop.call_soon_threadsafe(self._sink, *item)

    def crashed(self) -> str | None:
        """Why a worker process ended before it was told to, if one did."""
        if self._task is not None and self._task.done() and not self._task.cancelled() and self._task.exception():
            return f"the devices' loop failed: {self._task.exception()!r}"
        for worker in self._workers:
            if worker.exitcode not in (None, 0):
                return f"worker process {worker.name} exited with {worker.exitcode}"
        return None

    async def stop(self) -> None:
        """Disconnect every device and wait for them (and any worker process) to end."""
        self._stop.set()
        if self._task is not None:
            await self._task
        if self._stop_workers is not None:
            self._stop_workers.set()
        for worker in self._workers:
            await asyncio.to_thread(worker.join, 30)
            if worker.is_alive():
                worker.terminate()
                await asyncio.to_thread(worker.join, 10)
        if self._reader is not None:
            await asyncio.to_thread(self._reader.join, 10)


def run_worker(
    specs: list[DeviceSpec],
    settings: PlayerSettings,
    events: multiprocessing.Queue[tuple[int, Happening] | None],
    stop_workers: ProcessEvent,
) -> None:
    """A worker process: play its share of devices, sending every happening to the parent."""
    # Ctrl-C reaches the whole process group: the parent hears it and stops the workers in order.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    asyncio.run(_worker(specs, settings, events, stop_workers))
    events.put(None)


async def _worker(
    specs: list[DeviceSpec],
    settings: PlayerSettings,
    events: multiprocessing.Queue[tuple[int, Happening] | None],
    stop_workers: ProcessEvent,
) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    threading.Thread(target=lambda: (stop_workers.wait(), loop.call_soon_threadsafe(stop.set)), daemon=True).start()
    await play(specs, settings, lambda index, happening: events.put((index, happening)), stop)
