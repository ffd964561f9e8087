"""`skylift devices ...`: fleet administration from the command line, through the HTTP API."""

from __future__ import annotations

import csv
import io
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from skylift.config import Settings

devices = typer.Typer(help="Devices, through the HTTP API (the admin token is needed).", no_args_is_help=True)
console = Console(stderr=True)
CHUNK = 64 * 1024
CREDENTIAL_COLUMNS = ("id", "name", "product_key", "access_token", "device_secret")


def _default_api() -> str:
    settings = Settings()
    return f"{'https' if settings.serves_tls else 'http'}://127.0.0.1:{settings.http_port}"


def _token(given: str | None) -> str:
    if given:
        return given
    kept = Settings().data_dir / "admin-token"
    if kept.is_file():
        return kept.read_text().strip()
    console.print("skylift: give the admin token with --token or SKYLIFT_ADMIN_TOKEN")
    raise typer.Exit(2)


def _sent(content: bytes, progress: Progress, task: Any) -> Iterator[bytes]:
    for start in range(0, len(content), CHUNK):
        chunk = content[start : start + CHUNK]
        yield chunk
        progress.advance(task, len(chunk))


def _rows_in(content: bytes, is_json: bool) -> int | None:
    try:
        if is_json:
            return None
        lines = csv.reader(io.StringIO(content.decode("utf-8-sig"), newline=""))
        return max(sum(1 for line in lines if any(cell.strip() for cell in line)) - 1, 0)
    except (UnicodeDecodeError, csv.Error):
        return None


@devices.command("import")
def import_devices(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="CSV (name,tags,gateway,address) or JSON")],
    product: Annotated[str, typer.Option("--product", help="The product's key (product_key)")],
    api: Annotated[
        str | None, typer.Option("--api", help="Skylift's base URL (default: this machine, SKYLIFT_HTTP_PORT)")
    ] = None,
    token: Annotated[str | None, typer.Option("--token", envvar="SKYLIFT_ADMIN_TOKEN", help="The admin token")] = None,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write the credentials here (CSV) instead of to stdout")
    ] = None,
) -> None:
    """Register every device of FILE at once, or none if any row is wrong; print their credentials (CSV).

    Credentials are shown once: keep the output."""
    content = file.read_bytes()
    is_json = file.suffix.lower() == ".json"
    count = _rows_in(content, is_json)
    url = f"{(api or _default_api()).rstrip('/')}/api/v1/devices/import"
    headers = {
        "Authorization": f"Bearer {_token(token)}",
        "Content-Type": "application/json" if is_json else "text/csv",
        "Content-Length": str(len(content)),
    }
    columns = [TextColumn("{task.description}"), BarColumn(), DownloadColumn(), SpinnerColumn(), TimeElapsedColumn()]
    with Progress(*columns, console=console, transient=True) as progress:
        sending = progress.add_task(f"sending {file.name}", total=len(content))
        creating = progress.add_task(f"registering {count if count is not None else 'the'} devices", total=None)
        try:
            response = httpx.post(
                url,
                params={"product_key": product},
                content=_sent(content, progress, sending),
                headers=headers,
                timeout=httpx.Timeout(30, read=600),
            )
        except httpx.HTTPError as exc:
            console.print(f"skylift: cannot reach {url}: {exc}", markup=False)
            raise typer.Exit(1) from None
        progress.update(creating, total=1, completed=1)
    if response.status_code != 201:
        _refused(response)
        raise typer.Exit(1)
    created: list[dict[str, Any]] = response.json()["items"]
    _write(created, output)
    where = f" (credentials in {output})" if output else ""
    console.print(f"{len(created)} devices registered in product {product}{where}", markup=False)


def _refused(response: httpx.Response) -> None:
    try:
        error = response.json()["error"]
    except (ValueError, KeyError, TypeError):
        console.print(f"skylift: the import was refused ({response.status_code}): {response.text[:500]}", markup=False)
        return
    console.print(f"skylift: {error.get('message')}", markup=False)
    if error.get("errors"):
        table = Table("row", "field", "message")
        for item in error["errors"]:
            table.add_row(str(item["row"]), str(item.get("field") or ""), str(item["message"]))
        console.print(table)


def _write(created: list[dict[str, Any]], output: Path | None) -> None:
    columns = [c for c in CREDENTIAL_COLUMNS if any(c in device for device in created)]
    if output is None:
        writer = csv.writer(sys.stdout)
        writer.writerow(columns)
        writer.writerows([device.get(c, "") for c in columns] for device in created)
        return
    # Credentials: readable by the operator only.
    descriptor = os.open(output, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with open(descriptor, "w", newline="") as target:
        writer = csv.writer(target)
        writer.writerow(columns)
        writer.writerows([device.get(c, "") for c in columns] for device in created)
