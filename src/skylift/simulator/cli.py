"""`skylift device` (one device with its credentials) and `skylift simulate` (a fleet of them)."""

from __future__ import annotations

import asyncio
import signal
from datetime import datetime
from typing import Annotated

import typer
from rich.console import Console

from skylift.simulator.behaviour import STEP_REASONS, Behaviour, Fate
from skylift.simulator.device import Happening, Phase, PlayerSettings
from skylift.simulator.fetch import Download
from skylift.simulator.protocol import Credentials, Dialect

console = Console(stderr=True, highlight=False)
PHASE_STYLES = {
    Phase.OFFLINE: "dim",
    Phase.CONNECTING: "yellow",
    Phase.READY: "cyan",
    Phase.DOWNLOADING: "blue",
    Phase.FLASHING: "magenta",
    Phase.REBOOTING: "magenta",
    Phase.UPGRADED: "bold green",
    Phase.FAILED: "bold red",
    Phase.ERROR: "bold red",
}

Host = Annotated[str, typer.Option(help="Skylift's MQTT host")]
Port = Annotated[int, typer.Option(help="Skylift's MQTT port")]
Version = Annotated[str, typer.Option(help="the version the device runs at start")]
Module = Annotated[str, typer.Option(help="the module the device upgrades (default: the whole firmware)")]
Ask = Annotated[bool, typer.Option("--ask", help="ask for an upgrade after every boot (campaigns without push)")]


def register(app: typer.Typer) -> None:
    """Add the simulator's commands to the `skylift` command."""
    from skylift.simulator.simulate import simulate

    app.command("device")(device)
    app.command("simulate")(simulate)


def device(
    token: Annotated[
        str | None, typer.Option(envvar="SKYLIFT_DEVICE_TOKEN", help="access token (a token device)")
    ] = None,
    product_key: Annotated[str | None, typer.Option(help="product key (a product-key device)")] = None,
    name: Annotated[str | None, typer.Option(help="device name (a product-key device)")] = None,
    secret: Annotated[
        str | None, typer.Option(envvar="SKYLIFT_DEVICE_SECRET", help="device secret (a product-key device)")
    ] = None,
    dialect: Annotated[
        Dialect | None, typer.Option(help="token, product-key or eztcloud; default: token when a token is given")
    ] = None,
    host: Host = "127.0.0.1",
    port: Port = 1883,
    version: Version = "1.0.0",
    module: Module = "default",
    download: Annotated[Download, typer.Option(help="full, range (resumed) or skip; MQTT notices come in blocks")] = (
        Download.FULL
    ),
    fail: Annotated[int | None, typer.Option(help="fail the first upgrade with this step: -1, -2, -3 or -4")] = None,
    reboot: Annotated[bool, typer.Option("--reboot", help="restart once after the first notice")] = False,
    ask: Ask = False,
    once: Annotated[bool, typer.Option("--once", help="exit after one upgrade: 0 if it succeeded, 1 if not")] = False,
    timeout: Annotated[float | None, typer.Option(help="give up (exit 1) after this many seconds")] = None,
) -> None:
    """Play one device with its credentials until stopped.

    It reports its version, follows upgrade notices (download, verify, flash, report progress), restarts
    and reports its new version."""
    credentials = _credentials(token, product_key, name, secret)
    chosen = dialect or (Dialect.TOKEN if token else Dialect.PRODUCT_KEY)
    if fail is not None and fail not in STEP_REASONS:
        raise typer.BadParameter("the failure step is -1, -2, -3 or -4", param_hint="--fail")
    if fail is not None and reboot:
        raise typer.BadParameter("a device either fails (--fail) or restarts (--reboot) in its first upgrade")
    behaviour = Behaviour(Fate.FAIL, fail) if fail is not None else Behaviour(Fate.REBOOT if reboot else Fate.SUCCEED)
    settings = PlayerSettings(
        host=host, port=port, version=version, module=module, download=download, ask_at_boot=ask, once=once
    )
    try:
        phase = asyncio.run(_play_one(credentials, chosen, settings, behaviour, timeout))
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    if phase is Phase.ERROR or (once and phase is not Phase.UPGRADED):
        raise typer.Exit(1)


def _credentials(token: str | None, product_key: str | None, name: str | None, secret: str | None) -> Credentials:
    if token:
        return Credentials(name=name or "device", product_key=product_key or "", access_token=token)
    if product_key and name and secret:
        return Credentials(name=name, product_key=product_key, device_secret=secret)
    raise typer.BadParameter("give --token, or --product-key, --name and --secret")


async def _play_one(
    credentials: Credentials, dialect: Dialect, settings: PlayerSettings, behaviour: Behaviour, timeout: float | None
) -> Phase:
    from skylift.simulator.device import DevicePlayer
    from skylift.simulator.fetch import download_client

    stop = stop_on_signals()
    async with download_client() as http:
        player = DevicePlayer(credentials, dialect, settings, http, print_happening, behaviour)
        task = asyncio.create_task(player.run(stop))
        try:
            return await asyncio.wait_for(asyncio.shield(task), timeout)
        except TimeoutError:
            console.print(f"[bold red]no upgrade ended within {timeout:g} s[/]")
            stop.set()
            await task
            return Phase.ERROR if settings.once else task.result()


def stop_on_signals() -> asyncio.Event:
    """An event set by Ctrl-C or SIGTERM: devices then disconnect cleanly."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for number in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(number, stop.set)
    return stop


def print_happening(happening: Happening) -> None:
    # The wall clock is read here, at the edge, only to show when something happened.
    stamp = datetime.now().strftime("%H:%M:%S")
    style = PHASE_STYLES[happening.phase]
    console.print(f"[dim]{stamp}[/] [{style}]{happening.phase:<11}[/] {happening.text}")
