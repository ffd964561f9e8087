"""`skylift simulate`: a fleet of virtual devices, optionally through one campaign, judged at the end.

A run: take the devices' credentials (register them, or read a file an earlier run wrote), give each
a dialect and a behaviour (exact shares of failing, offline and rebooting devices, drawn with a seeded
RNG), connect them all, then start a campaign on them (`--package`) or follow one (`--campaign`) until
nothing more can happen, and compare each device's end in the campaign with what its behaviour should
give. Without a campaign the devices play until stopped (`--duration`, Ctrl-C).
"""

from __future__ import annotations

import asyncio
import json
import random
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.live import Live

from skylift.simulator import view
from skylift.simulator.behaviour import Fate, Rates, assign, dialects
from skylift.simulator.cli import Ask, Host, Module, Port, Version, console, stop_on_signals
from skylift.simulator.device import Phase, PlayerSettings
from skylift.simulator.fetch import Download
from skylift.simulator.fleet import DeviceSpec, Fleet, Tally
from skylift.simulator.management import Management, ManagementError, read_credentials, write_credentials
from skylift.simulator.protocol import login_for
from skylift.simulator.verdict import Judgement, judge, judgement, settled

POLL_SECONDS = 1.0
IN_PROGRESS = ("notified", "downloading", "upgrading")


class DialectChoice(StrEnum):
    TOKEN = "token"
    PRODUCT_KEY = "product-key"
    EZTCLOUD = "eztcloud"
    MIXED = "mixed"


class DownloadChoice(StrEnum):
    FULL = "full"
    RANGE = "range"
    MQTT = "mqtt"  # a campaign started here sends files over MQTT in blocks
    SKIP = "skip"


FailRate = Annotated[float, typer.Option(min=0.0, max=1.0, help="share of devices whose upgrade fails (-1..-4)")]
OfflineRate = Annotated[float, typer.Option(min=0.0, max=1.0, help="share of devices that never connect")]
RebootRate = Annotated[float, typer.Option(min=0.0, max=1.0, help="share that restart once before downloading")]


@dataclass(frozen=True)
class Plan:
    devices: int
    product_key: str
    dialect: DialectChoice
    rates: Rates
    download: DownloadChoice
    register: bool
    credentials: Path | None
    api: str
    admin_token: str | None
    settings: PlayerSettings
    package: int | None
    campaign: int | None
    processes: int
    seed: int
    timeout: float
    duration: float | None
    report: Path | None


def simulate(
    devices: Annotated[int, typer.Option(min=1, help="how many devices")],
    product: Annotated[str, typer.Option(help="the product key of the devices")],
    dialect: Annotated[DialectChoice, typer.Option(help="token, product-key, eztcloud, or mixed")] = (
        DialectChoice.TOKEN
    ),
    fail_rate: FailRate = 0.0,
    offline_rate: OfflineRate = 0.0,
    reboot_rate: RebootRate = 0.0,
    download: Annotated[
        DownloadChoice, typer.Option(help="full, range (resumed), mqtt (blocks; for --package) or skip")
    ] = DownloadChoice.FULL,
    register: Annotated[bool, typer.Option("--register", help="create the devices through the API")] = False,
    credentials: Annotated[
        Path | None, typer.Option(help="credentials file: written by --register, read otherwise")
    ] = None,
    api: Annotated[str, typer.Option(envvar="SKYLIFT_API_URL", help="management API base URL")] = (
        "http://127.0.0.1:8080/api/v1"
    ),
    token: Annotated[str | None, typer.Option(envvar="SKYLIFT_ADMIN_TOKEN", help="admin token")] = None,
    host: Host = "127.0.0.1",
    port: Port = 1883,
    version: Version = "1.0.0",
    module: Module = "default",
    ask: Ask = False,
    package: Annotated[
        int | None, typer.Option(help="start a campaign of this package once the devices are up")
    ] = None,
    campaign: Annotated[int | None, typer.Option(help="follow this campaign until it is over")] = None,
    processes: Annotated[int, typer.Option(min=1, help="spread the devices over this many processes")] = 1,
    seed: Annotated[int, typer.Option(help="seed of the behaviours' draw")] = 1,
    timeout: Annotated[float, typer.Option(help="seconds to wait for the campaign to be over")] = 600.0,
    duration: Annotated[float | None, typer.Option(help="without a campaign: play this many seconds")] = None,
    report: Annotated[Path | None, typer.Option(help="write the outcome as JSON to this file")] = None,
) -> None:
    """Run many virtual devices over real MQTT and HTTP.

    They fail at the given rates with the seeds' step codes. With --package or --campaign, each device's end
    in the campaign is checked against its behaviour; the exit code is 1 when any ended otherwise."""
    if package is not None and campaign is not None:
        raise typer.BadParameter("give --package or --campaign, not both")
    if not register and credentials is None:
        raise typer.BadParameter("give --register (create the devices) or --credentials FILE (devices made earlier)")
    needs_api = register or package is not None or campaign is not None
    if needs_api and not token:
        raise typer.BadParameter("the management API needs the admin token (--token or SKYLIFT_ADMIN_TOKEN)")
    try:
        rates = Rates(fail=fail_rate, offline=offline_rate, reboot=reboot_rate)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    fetching = Download.FULL if download is DownloadChoice.MQTT else Download(download.value)
    settings = PlayerSettings(host=host, port=port, version=version, module=module, download=fetching, ask_at_boot=ask)
    plan = Plan(
        devices=devices,
        product_key=product,
        dialect=dialect,
        rates=rates,
        download=download,
        register=register,
        credentials=credentials,
        api=api,
        admin_token=token,
        settings=settings,
        package=package,
        campaign=campaign,
        processes=processes,
        seed=seed,
        timeout=timeout,
        duration=duration,
        report=report,
    )
    try:
        ok = asyncio.run(run(plan))
    except (ManagementError, ValueError) as exc:
        console.print(f"[bold red]{exc}[/]")
        raise typer.Exit(2) from None
    if not ok:
        raise typer.Exit(1)


@dataclass
class Board:
    """The live display's state: the fleet, the campaign as last read, what the run is doing."""

    tally: Tally
    screen: Live
    started: float = field(default_factory=time.monotonic)
    status: str = "connecting"
    campaign: dict[str, Any] | None = None

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def refresh(self) -> None:
        self.screen.update(view.live(self.tally, self.campaign, f"{self.status} · {self.elapsed():.0f} s"))


async def run(plan: Plan) -> bool:
    """Play the plan; True when every device ended as its behaviour says."""
    stop = stop_on_signals()
    management = Management(plan.api, plan.admin_token or "")
    outcome: Judgement | None = None
    try:
        specs = await _specs(plan, management)
        tally = Tally.of(specs, plan.settings.version)
        fleet = Fleet(specs, plan.settings, tally.apply, plan.processes)
        with Live(console=console, refresh_per_second=4) as screen:
            board = Board(tally, screen)
            fleet.start()
            await _until(tally.up, stop, 60 + len(specs) / 10, fleet, board)
            connected = sum(1 for v in tally.devices.values() if v.listened)
            console.print(f"{connected} of {len(specs)} devices connected in {board.elapsed():.1f} s")
            if (plan.package or plan.campaign) and not stop.is_set() and fleet.crashed() is None:
                board.campaign = await _campaign(plan, management, specs)
                board.status = f"following campaign {board.campaign['id']}"
                shown = board.campaign
                console.print(f"campaign {shown['id']} → {shown['version']}: {shown['targeted']} devices")
                outcome = await _follow(plan, management, specs, int(board.campaign["id"]), stop, board)
            elif not stop.is_set():
                board.status = "playing (Ctrl-C stops)"
                await _until(lambda: False, stop, plan.duration, fleet, board)
            board.status = "stopping"
            board.refresh()
            await fleet.stop()
            board.refresh()
        if not console.is_terminal:
            console.line()  # the last frame, printed once, ends without a line break
    finally:
        await management.aclose()
    return _conclude(plan, tally, outcome, board.campaign, fleet.crashed())


async def _specs(plan: Plan, management: Management) -> list[DeviceSpec]:
    if plan.register:
        product = await management.product(plan.product_key)
        prefix = f"sim-{secrets.token_hex(3)}"
        names = [f"{prefix}-{i:05d}" for i in range(plan.devices)]
        console.print(f"registering {plan.devices} devices of product {product['name']} ({plan.product_key})")
        began = time.monotonic()
        made = await management.register(int(product["id"]), names)
        path = plan.credentials or Path(f"skylift-devices-{plan.product_key}.json")
        write_credentials(path, plan.product_key, made)
        console.print(f"{len(made)} devices registered in {time.monotonic() - began:.1f} s; credentials in {path}")
    else:
        assert plan.credentials is not None
        made = [c for c in read_credentials(plan.credentials) if c.product_key == plan.product_key]
        if len(made) < plan.devices:
            raise ManagementError(
                f"{plan.credentials} holds {len(made)} devices of product {plan.product_key}, not {plan.devices}"
            )
        made = made[: plan.devices]
    rng = random.Random(plan.seed)
    behaviours = assign(plan.devices, plan.rates, rng)
    kinds = dialects(plan.devices, plan.dialect.value)
    for credentials, kind in zip(made, kinds, strict=True):
        login_for(kind, credentials)  # a device without the credentials its dialect needs stops the run here
    return [DeviceSpec(i, made[i], kinds[i], behaviours[i]) for i in range(plan.devices)]


async def _campaign(plan: Plan, management: Management, specs: list[DeviceSpec]) -> dict[str, Any]:
    if plan.campaign is not None:
        return await management.campaign(plan.campaign)
    ids = [s.credentials.device_id for s in specs]
    if any(i is None for i in ids):
        raise ManagementError("the credentials carry no device ids: a campaign cannot name the devices")
    body = {
        "name": f"simulate {len(specs)} devices",
        "package_id": plan.package,
        "target": {"device_ids": ids},
        "protocol": "mqtt" if plan.download is DownloadChoice.MQTT else "http",
    }
    return await management.create_campaign(body)


async def _follow(
    plan: Plan, management: Management, specs: list[DeviceSpec], campaign_id: int, stop: asyncio.Event, board: Board
) -> Judgement:
    """Poll the campaign until it is over for these devices (or `plan.timeout` passes); judge every device."""
    deadline = time.monotonic() + plan.timeout
    while True:
        campaign = board.campaign = await management.campaign(campaign_id)
        board.refresh()
        counts: dict[str, int] = campaign.get("counts", {})
        quiet = not any(counts.get(state) for state in IN_PROGRESS)
        over = stop.is_set() or time.monotonic() > deadline
        if quiet or over or campaign["state"] != "running":
            verdicts = judge(specs, await management.campaign_devices(campaign_id), campaign, plan.settings.version)
            if settled(campaign, verdicts):
                console.print(f"campaign {campaign_id} over for these devices after {board.elapsed():.1f} s")
                return judgement(verdicts)
            if over:
                reason = "stopped" if stop.is_set() else f"not over after {plan.timeout:g} s"
                console.print(f"[bold red]campaign {campaign_id} {reason}[/]")
                return judgement(verdicts)
        await _sleep(stop, POLL_SECONDS)


async def _until(
    condition: Callable[[], bool], stop: asyncio.Event, seconds: float | None, fleet: Fleet, board: Board
) -> None:
    """Wait, refreshing the display, until `condition()` holds, `seconds` pass, the run is stopped or fails."""
    deadline = None if seconds is None else time.monotonic() + seconds
    while not condition() and not stop.is_set() and fleet.crashed() is None:
        if deadline is not None and time.monotonic() > deadline:
            return
        board.refresh()
        await _sleep(stop, 0.25)


async def _sleep(stop: asyncio.Event, seconds: float) -> None:
    try:
        await asyncio.wait_for(stop.wait(), seconds)
    except TimeoutError:
        pass


def _conclude(
    plan: Plan, tally: Tally, outcome: Judgement | None, campaign: dict[str, Any] | None, crash: str | None
) -> bool:
    """Print the summary, write the report; True when nothing unexpected happened."""
    errors = [v for v in tally.devices.values() if v.phase is Phase.ERROR]
    unplanned = [v for v in tally.devices.values() if v.failures and v.spec.behaviour.fate is not Fate.FAIL]
    if outcome is not None:
        console.print(view.summary(outcome))
    else:
        console.print(view.fleet_summary(tally))
    for device in (errors + unplanned)[:10]:
        console.print(f"[red]{device.spec.credentials.name} ({device.spec.dialect}): {device.phase} {device.text}[/]")
    if crash:
        console.print(f"[bold red]{crash}[/]")
    ok = not errors and not unplanned and crash is None and (outcome is None or not outcome.unexpected)
    if plan.report is not None:
        body: dict[str, Any] = {
            "ok": ok,
            "devices": plan.devices,
            "product_key": plan.product_key,
            "phases": {phase.value: n for phase, n in tally.phases().items()},
            "campaign": None if campaign is None else {k: campaign.get(k) for k in ("id", "state", "counts")},
        }
        if outcome is not None:
            body.update(outcome.to_json())
        plan.report.write_text(json.dumps(body, indent=1) + "\n")
    console.print("[bold green]every device ended as expected[/]" if ok else "[bold red]unexpected ends[/]")
    return ok
