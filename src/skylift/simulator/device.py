"""One simulated device over real MQTT and HTTP: it boots, reports its version, follows upgrade notices
(download, verify, flash, report progress), restarts into the new version and reports it.

Every boot is a new MQTT connection (clean session): report the version, subscribe to the notice and
block-reply topics, optionally ask for an upgrade. A notice is followed to its end before the next
one is read; notices for the version the device already runs, or for another module, are ignored.
"""

from __future__ import annotations

import asyncio
import itertools
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import Enum, StrEnum
from typing import TypeVar

import aiomqtt
import httpx
from paho.mqtt.reasoncodes import ReasonCode

from skylift.kit.versions import same_version
from skylift.simulator import fetch
from skylift.simulator.behaviour import STEP_REASONS, Behaviour, Fate
from skylift.simulator.fetch import Download, DownloadFailed
from skylift.simulator.protocol import (
    Credentials,
    Dialect,
    FileOrder,
    NoticeError,
    Topics,
    UpgradeOrder,
    canonical_module,
    login_for,
    parse_notice,
    progress_report,
    upgrade_request,
    version_report,
)

T = TypeVar("T")
# CONNACK refusals that no retry will cure: wrong protocol, client id, credentials (MQTT 3.1.1 codes 1, 2, 4, 5
# and the reason codes paho reports them as).
FATAL_CONNACK = frozenset({1, 2, 4, 5, 0x84, 0x85, 0x86, 0x87, 0x8C})


class Phase(StrEnum):
    OFFLINE = "offline"  # told never to connect
    CONNECTING = "connecting"
    READY = "ready"  # connected, version reported, listening for notices
    DOWNLOADING = "downloading"
    FLASHING = "flashing"
    REBOOTING = "rebooting"
    UPGRADED = "upgraded"  # reported its new version after an upgrade
    FAILED = "failed"  # reported a failure step
    ERROR = "error"  # cannot go on: its login is refused


@dataclass(frozen=True)
class Happening:
    """Something a device did or saw, for a display or a log."""

    phase: Phase
    text: str
    version: str


Observer = Callable[[Happening], None]


@dataclass(frozen=True)
class PlayerSettings:
    host: str = "127.0.0.1"
    port: int = 1883
    version: str = "1.0.0"
    module: str = "default"
    download: Download = Download.FULL
    ask_at_boot: bool = False  # ask for an upgrade after each boot (for campaigns without push)
    version_property: str | None = None  # EZtCloud: the property carrying the version
    progress_every: int = 25  # percent of the download between two progress reports
    keepalive: int = 60
    timeout: float = 60.0  # for CONNACK, SUBACK, PUBACK and each MQTT block
    once: bool = False  # stop after the first upgrade that ends (succeeded or failed)


class Refused(Exception):
    """The broker refused the login for good."""


class _Stopped(Exception):
    pass


class _Lost(Exception):
    pass


class Turn(Enum):
    IGNORED = "ignored"
    FAILED = "failed"
    REBOOT = "reboot"  # restart now (told to, or flashed)


class Link:
    """One MQTT connection: a reader task sorts what arrives into notices and block replies."""

    def __init__(self, client: aiomqtt.Client, topics: Topics, stop: asyncio.Event, timeout: float) -> None:
        self.client = client
        self.topics = topics
        self.notices: asyncio.Queue[bytes] = asyncio.Queue()
        self.blocks: asyncio.Queue[bytes] = asyncio.Queue()
        self._stop = stop
        self._timeout = timeout
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for message in self.client.messages:
            payload = message.payload if isinstance(message.payload, bytes) else str(message.payload).encode()
            if message.topic.value == self.topics.block_reply:
                self.blocks.put_nowait(payload)
            elif message.topic.value == self.topics.notices:
                self.notices.put_nowait(payload)

    async def publish(self, topic: str, payload: bytes) -> None:
        await self._until(self.client.publish(topic, payload, qos=1, timeout=self._timeout))

    async def subscribe(self, topics: tuple[str, ...]) -> None:
        codes = await self._until(self.client.subscribe([(t, 1) for t in topics], timeout=self._timeout))
        refused = [topic for topic, code in zip(topics, codes, strict=False) if _failed(code)]
        if refused:
            raise Refused(f"subscription refused: {', '.join(refused)}")

    async def next_notice(self) -> bytes:
        return await self._until(self.notices.get())

    async def next_block(self) -> bytes:
        try:
            return await asyncio.wait_for(self._until(self.blocks.get()), self._timeout)
        except TimeoutError:
            raise DownloadFailed(f"no block reply within {self._timeout:g} s") from None

    def drop_notices(self) -> None:
        while not self.notices.empty():
            self.notices.get_nowait()

    async def _until(self, work: Awaitable[T]) -> T:
        """`work`'s result, unless the connection drops (`_Lost`) or the device is stopped (`_Stopped`) first."""
        task = asyncio.ensure_future(work)
        stopped = asyncio.ensure_future(self._stop.wait())
        try:
            done, _ = await asyncio.wait({task, self._reader, stopped}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopped.cancel()
        if task in done:
            return task.result()
        task.cancel()
        if self._reader in done:
            raise _Lost(_reason(self._reader))
        raise _Stopped

    def close(self) -> None:
        if self._reader.done() and not self._reader.cancelled():
            self._reader.exception()  # seen: the connection's end was handled where it was noticed
        self._reader.cancel()


def _failed(code: object) -> bool:
    if isinstance(code, ReasonCode):
        return bool(code.is_failure)
    return code == 0x80


def _reason(task: asyncio.Task[None]) -> str:
    if task.cancelled():
        return "closed"
    error = task.exception()
    return f"connection lost: {error}" if error is not None else "connection closed"


class DevicePlayer:
    """Plays one device until stopped (or, with `once`, until its first upgrade ends)."""

    def __init__(
        self,
        credentials: Credentials,
        dialect: Dialect,
        settings: PlayerSettings,
        http: httpx.AsyncClient,
        observe: Observer,
        behaviour: Behaviour | None = None,
        gate: asyncio.Semaphore | None = None,
    ) -> None:
        self.credentials = credentials
        self.dialect = dialect
        self.settings = settings
        self.behaviour = behaviour or Behaviour()
        self.login = login_for(dialect, credentials)
        self.topics = Topics(dialect, self.login)
        self.version = settings.version
        self.phase = Phase.CONNECTING
        self.upgrades = 0
        self.failures = 0
        self._http = http
        self._observe = observe
        self._ids = itertools.count(1)
        self._rebooted = False
        self._failing = self.behaviour.fate is Fate.FAIL
        self._flashed = False
        self._interrupted = False  # restarted in the middle of an upgrade
        self._jitter = random.Random(credentials.name)
        # Held from CONNECT until the device listens, so that a fleet does not storm the broker at once.
        self._gate = gate

    def note(self, phase: Phase, text: str) -> None:
        self.phase = phase
        self._observe(Happening(phase, text, self.version))

    async def run(self, stop: asyncio.Event) -> Phase:
        """Play until `stop` is set; returns the phase the device ended in."""
        if self.behaviour.fate is Fate.OFFLINE:
            self.note(Phase.OFFLINE, "stays offline (never connects)")
            await stop.wait()
            return self.phase
        delay = 1.0
        while not stop.is_set():
            try:
                if await self._boot(stop):
                    return self.phase
                delay = 1.0
            except Refused as exc:
                self.note(Phase.ERROR, str(exc))
                return self.phase
            except (aiomqtt.MqttError, _Lost, OSError) as exc:
                if isinstance(exc, aiomqtt.MqttCodeError) and _fatal(exc.rc):
                    self.note(Phase.ERROR, f"login refused: {exc}")
                    return self.phase
                self.note(Phase.CONNECTING, f"{exc or type(exc).__name__}; reconnecting in {delay:.0f} s")
                await _sleep_or_stop(delay * self._jitter.uniform(0.8, 1.2), stop)
                delay = min(delay * 2, 10.0)
        return self.phase

    async def _boot(self, stop: asyncio.Event) -> bool:
        """One connection, from boot to the next restart; True when the device is done (stopped, or `once`)."""
        self.note(Phase.CONNECTING, f"connecting to {self.settings.host}:{self.settings.port} as {self.dialect}")
        client = aiomqtt.Client(
            self.settings.host,
            self.settings.port,
            username=self.login.username,
            password=self.login.password,
            identifier=f"sim-{self.credentials.name}",
            keepalive=self.settings.keepalive,
            timeout=self.settings.timeout,
        )
        gate = self._gate
        held = gate is not None
        if gate is not None:
            await gate.acquire()

        def release() -> None:
            nonlocal held
            if gate is not None and held:
                held = False
                gate.release()

        try:
            async with client:
                link = Link(client, self.topics, stop, self.settings.timeout)
                try:
                    return await self._listen(link, release)
                except _Stopped:
                    return True
                finally:
                    link.close()
        finally:
            release()

    async def _listen(self, link: Link, listening: Callable[[], None]) -> bool:
        settings = self.settings
        report = version_report(self.dialect, self.version, settings.module, next(self._ids), settings.version_property)
        # Report before subscribing: a notice due on connection then goes out once, after the report.
        await link.publish(self.topics.report, report)
        await link.subscribe(self.topics.subscriptions())
        listening()
        if self._flashed:
            self._flashed = False
            self.upgrades += 1
            self.note(Phase.UPGRADED, f"restarted on {self.version} and reported it")
            if settings.once:
                return True
        else:
            self.note(Phase.READY, f"on {self.version}, listening")
        # An unchanged EZtCloud property report does not tell Skylift the device restarted: it asks instead.
        interrupted, self._interrupted = self._interrupted, False
        if settings.ask_at_boot or (interrupted and self.dialect is Dialect.EZTCLOUD):
            await link.publish(
                self.topics.ask, upgrade_request(self.dialect, self.version, settings.module, next(self._ids))
            )
        while True:
            payload = await link.next_notice()
            try:
                order = parse_notice(payload)
            except NoticeError as exc:
                self.note(self.phase, f"ignored a message on {self.topics.notices}: {exc}")
                continue
            if order is None:
                continue  # "nothing pending" or `upgrade: false`: the answer to a request
            turn = await self._follow(link, order)
            if turn is Turn.REBOOT:
                return False
            if turn is Turn.FAILED:
                link.drop_notices()  # copies of the notice that just failed
                if settings.once:
                    return True

    async def _follow(self, link: Link, order: UpgradeOrder) -> Turn:
        if canonical_module(order.module) != canonical_module(self.settings.module):
            self.note(self.phase, f"ignored a notice for module {order.module}")
            return Turn.IGNORED
        if same_version(self.version, order.version):
            self.note(self.phase, f"ignored a notice for {order.version}: already on it")
            return Turn.IGNORED
        size = sum(f.size for f in order.files)
        how = "MQTT blocks" if order.stream_id is not None else self.settings.download.value
        self.note(Phase.DOWNLOADING, f"notice: {order.version}, {size} bytes ({how})")
        if self.behaviour.fate is Fate.REBOOT and not self._rebooted:
            self._rebooted = self._interrupted = True
            self.note(Phase.REBOOTING, "restarts before downloading (simulated)")
            return Turn.REBOOT
        fail = self.behaviour.fail_step if self._failing else None
        self._failing = False  # only the first attempt fails: a retry succeeds
        await self._progress(link, order, 1, "downloading")
        try:
            digests = await self._download(link, order, give_up=fail == -2)
        except DownloadFailed as exc:
            return await self._fail(link, order, -2, str(exc))
        for file, digest in zip(order.files, digests, strict=True):
            if fail == -3:
                digest = "0" * len(file.digest)  # a corrupted download (simulated)
            if digest is not None and digest != file.digest:
                return await self._fail(link, order, -3, f"{file.algorithm} mismatch on {file.name}")
        self.note(Phase.FLASHING, f"verified; flashing {order.version}")
        if fail in (-4, -1):
            what = "flash write error (simulated)" if fail == -4 else "new firmware did not start (simulated)"
            return await self._fail(link, order, fail, what)
        self.version = order.version
        self._flashed = True
        await self._progress(link, order, 100, f"upgraded to {order.version}")
        self.note(Phase.REBOOTING, f"flashed {order.version}; restarting")
        return Turn.REBOOT

    async def _download(self, link: Link, order: UpgradeOrder, give_up: bool) -> list[str | None]:
        """Each file's digest (None where the download is skipped)."""
        if self.settings.download is Download.SKIP:
            if give_up:
                raise DownloadFailed("download failed (simulated)")
            return [None for _ in order.files]
        total = max(sum(f.size for f in order.files), 1)
        step = max(self.settings.progress_every, 1)
        done_before = 0
        reported = 0

        async def on_bytes(received: int) -> None:
            nonlocal reported
            percent = (done_before + received) * 100 // total
            if self.settings.progress_every > 0 and percent >= reported + step and percent < 100:
                reported = percent - percent % step
                await self._progress(link, order, max(reported, 1), f"downloading {percent}%")

        digests: list[str | None] = []
        for file in order.files:
            digests.append(await self._fetch(link, order, file, on_bytes, give_up))
            done_before += file.size
        return digests

    async def _fetch(
        self, link: Link, order: UpgradeOrder, file: FileOrder, on_bytes: fetch.OnBytes, give_up: bool
    ) -> str:
        if order.stream_id is not None:
            fetched = await fetch.fetch_blocks(
                link,
                self.topics.block_request,
                order.stream_id,
                file,
                lambda: next(self._ids),
                on_bytes,
                give_up,
            )
        else:
            fetched = await fetch.fetch_url(self._http, file, self.settings.download, on_bytes, give_up)
        return fetched.digest

    async def _fail(self, link: Link, order: UpgradeOrder, step: int, desc: str) -> Turn:
        await self._progress(link, order, step, desc)
        self.failures += 1
        self.note(Phase.FAILED, f"reported {step} ({STEP_REASONS[step]}): {desc}")
        return Turn.FAILED

    async def _progress(self, link: Link, order: UpgradeOrder, step: int, desc: str) -> None:
        body = progress_report(self.dialect, step, desc, order.module, next(self._ids), order.command_id)
        await link.publish(self.topics.progress, body)


def _fatal(code: object) -> bool:
    if isinstance(code, ReasonCode):
        return int(code.value) in FATAL_CONNACK
    return isinstance(code, int) and code in FATAL_CONNACK


async def _sleep_or_stop(seconds: float, stop: asyncio.Event) -> None:
    try:
        await asyncio.wait_for(stop.wait(), seconds)
    except TimeoutError:
        pass
