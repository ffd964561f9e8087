"""The management API as the simulator uses it: find a product, register devices, run and read a campaign.

Device credentials are taken from the answer that creates a device (and kept in a credentials file),
never from device lists, which need not carry secrets.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from skylift.simulator.protocol import Credentials

PAGE = 1000  # the largest page the API hands out
FINAL_CAMPAIGN_STATES = frozenset({"finished", "canceled", "aborted"})
FINAL_DEVICE_STATES = frozenset({"succeeded", "failed", "canceled", "skipped"})


class ManagementError(Exception):
    """The management API refused a call, or could not be reached."""


class Management:
    def __init__(self, base_url: str, admin_token: str, timeout: float = 120.0) -> None:
        self._client = httpx.AsyncClient(
            base_url=base_url.rstrip("/"),
            headers={"Authorization": f"Bearer {admin_token}"},
            timeout=httpx.Timeout(timeout, connect=10.0),
            # Idle connections go before the server (uvicorn: 5 s) closes them under a new request.
            limits=httpx.Limits(keepalive_expiry=1.0),
        )

    async def aclose(self) -> None:
        await self._client.aclose()

    async def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = await self._client.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise ManagementError(f"{method} {path}: {type(exc).__name__}: {exc}") from None
        if response.status_code >= 400:
            raise ManagementError(f"{method} {path}: HTTP {response.status_code}: {_error_text(response)}")
        return response.json()

    async def _pages(self, path: str, **params: Any) -> list[dict[str, Any]]:
        """Every item of a list endpoint, page by page where the API pages."""
        items: list[dict[str, Any]] = []
        while True:
            body = await self._call("GET", path, params={**params, "limit": PAGE, "offset": len(items)})
            page = list(body["items"])
            items.extend(page)
            if "total" not in body or not page or len(items) >= int(body["total"]):
                return items

    async def product(self, product_key: str) -> dict[str, Any]:
        for product in await self._pages("/products"):
            if product.get("product_key") == product_key:
                return product
        raise ManagementError(f"no product has the key {product_key!r}")

    async def register(
        self,
        product_id: int,
        names: list[str],
        concurrency: int = 8,
        progress: Callable[[int], None] | None = None,
    ) -> list[Credentials]:
        """Create one device per name (a few requests at a time); their credentials, in the order of `names`."""
        gate = asyncio.Semaphore(concurrency)
        done = 0

        async def create(name: str) -> Credentials:
            nonlocal done
            async with gate:
                body = await self._call("POST", "/devices", json={"product_id": product_id, "name": name})
            done += 1
            if progress is not None:
                progress(done)
            return Credentials.from_json(body)

        return list(await asyncio.gather(*(create(name) for name in names)))

    async def create_campaign(self, body: dict[str, Any]) -> dict[str, Any]:
        return dict(await self._call("POST", "/campaigns", json=body))

    async def campaign(self, campaign_id: int) -> dict[str, Any]:
        return dict(await self._call("GET", f"/campaigns/{campaign_id}"))

    async def campaign_devices(self, campaign_id: int) -> list[dict[str, Any]]:
        return await self._pages(f"/campaigns/{campaign_id}/devices")


def _error_text(response: httpx.Response) -> str:
    try:
        error = response.json()["error"]
        return f"{error['code']}: {error['message']}"
    except (ValueError, KeyError, TypeError):
        return response.text[:200]


def write_credentials(path: Path, product_key: str, devices: list[Credentials]) -> None:
    """Save credentials for a later run (`--credentials`); readable by the owner only, as they hold secrets."""
    body = {"product_key": product_key, "devices": [d.to_json() for d in devices]}
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as file:
        json.dump(body, file, indent=1)
        file.write("\n")


def read_credentials(path: Path) -> list[Credentials]:
    """Credentials saved by `write_credentials`, or a JSON list of device creation answers."""
    try:
        body = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ManagementError(f"cannot read credentials from {path}: {exc}") from None
    entries = body.get("devices") if isinstance(body, dict) else body
    if not isinstance(entries, list):
        raise ManagementError(f"{path} holds no list of devices")
    try:
        return [Credentials.from_json(entry) for entry in entries]
    except (KeyError, TypeError, ValueError) as exc:
        raise ManagementError(f"{path}: a device entry lacks {exc}") from None
