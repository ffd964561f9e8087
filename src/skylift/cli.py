"""The `skylift` command."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer
import uvicorn
from rich.console import Console

from skylift import admin_cli, startup, users_cli
from skylift.simulator.cli import register as register_simulator

app = typer.Typer(help="Skylift: over-the-air firmware updates for IoT fleets.", no_args_is_help=True)
console = Console(stderr=True)
register_simulator(app)  # skylift device, skylift simulate


@app.command(epilog=startup.settings_epilog())
def serve() -> None:
    """Run the HTTP API, the embedded MQTT broker and the rollout engine in one process."""
    from skylift.app import build_context, create_app
    from skylift.devices import topics
    from skylift.kit import collector, logs
    from skylift.kit.zero_copy import ZeroCopyH11Protocol

    try:
        settings = startup.load_settings()
        startup.check_ports(settings)
    except startup.StartupError as exc:
        console.print(f"skylift: {exc}", highlight=False, markup=False, soft_wrap=True)
        raise typer.Exit(1) from None
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("transitions").setLevel(logging.WARNING)
    # aiosqlite's debug lines carry every statement's parameters, credentials included.
    logging.getLogger("aiosqlite").setLevel(logging.INFO)
    # Generate (or load) the admin token before the app starts, so a new one can be shown once.
    context, created = build_context(settings)
    if created:
        console.print(f"[bold]Admin token (shown once, kept in {settings.data_dir / 'admin-token'}):[/bold]")
        console.print(context.admin_token, highlight=False, soft_wrap=True)
    asgi = create_app(context=context)
    config = uvicorn.Config(
        asgi,
        host=settings.http_host,
        port=settings.http_port,
        log_level=settings.log_level.lower(),
        lifespan="on",
        # h11 writes header names as the app spells them; httptools lower-cases them, and device SDKs
        # that look for the bytes "Content-Length" in a download's head then fail (kit.canonical_headers).
        # Its subclass sends package files with sendfile (kit.zero_copy).
        http=ZeroCopyH11Protocol,
        ssl_certfile=settings.tls_cert_file,
        ssl_keyfile=settings.tls_key_file,
    )
    # uvicorn has set up its handlers by now: every one of them gets the secrets filter.
    logs.install(topics.redact)
    collector.tune_for_serving()
    uvicorn.Server(config).run()


@app.command("mosquitto-plugin")
def mosquitto_plugin(
    output: Annotated[Path, typer.Argument(help="Where the plugin (a shared library) goes")],
) -> None:
    """Build Skylift's plugin for an external Mosquitto 2.0 and print the mosquitto.conf lines it needs."""
    from skylift.broker.mosquitto import plugin

    try:
        built = plugin.build(output.resolve())
    except plugin.BuildFailed as exc:
        console.print(f"skylift: {exc}", highlight=False, markup=False, soft_wrap=True)
        raise typer.Exit(1) from None
    console.print(f"Built {built}. In mosquitto.conf, with SKYLIFT_MQTT_BROKER_PASSWORD in place of <password>:")
    url = "http://<skylift host>:8080/broker/v1/login"
    for line in plugin.config_lines(built, url, "skylift", "<password>"):
        typer.echo(line)


@app.command()
def version() -> None:
    """Print the version."""
    from skylift import __version__

    typer.echo(__version__)


app.add_typer(admin_cli.devices, name="devices")
users_cli.register(app)  # skylift users create

if __name__ == "__main__":
    app()
