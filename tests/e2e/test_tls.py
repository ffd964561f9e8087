"""`skylift serve` speaks HTTPS itself given SKYLIFT_TLS_CERT_FILE and SKYLIFT_TLS_KEY_FILE."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from dialects_kit import running_tls_server, self_signed_cert, trusting
from skylift_testkit import Fleet, Server, SimDevice, firmware


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, Path]]:
    root = tmp_path_factory.mktemp("skylift-tls")
    cert, key = self_signed_cert(root)
    with running_tls_server(root / "data", cert, key) as server:
        yield server, cert


def test_https_campaigns_download_over_tls(tls_server: tuple[Server, Path]) -> None:
    server, cert = tls_server
    assert server.http_url.startswith("https://")
    verify = trusting(cert)
    with httpx.Client(
        base_url=f"{server.http_url}/api/v1",
        headers={"Authorization": f"Bearer {server.admin_token}"},
        verify=verify,
        timeout=30,
    ) as api:
        fleet = Fleet.create(api)
        device = fleet.device()
        sim = SimDevice.token(server, device).connect()
        image = firmware(100_000, seed=90)
        campaign = fleet.campaign(fleet.package(image, "1.0.1")["id"], protocol="https")
        url = sim.notice()["params"]["url"]
        assert url.startswith(f"{server.http_url}/dl/")
        assert httpx.get(url, verify=verify).content == image
        ranged = httpx.get(url, verify=verify, headers={"Range": "bytes=1000-"})
        assert ranged.status_code == 206
        assert ranged.content == image[1000:]
        fleet.wait_state(campaign["id"], device["id"], "upgrading")
        sim.disconnect()


def test_plain_http_is_not_served_on_the_tls_port(tls_server: tuple[Server, Path]) -> None:
    server, _ = tls_server
    with pytest.raises(httpx.HTTPError):
        httpx.get(server.http_url.replace("https://", "http://") + "/healthz", timeout=5)
