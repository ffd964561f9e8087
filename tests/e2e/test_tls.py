"""`skylift serve` speaks HTTPS itself given SKYLIFT_TLS_CERT_FILE and SKYLIFT_TLS_KEY_FILE."""

from __future__ import annotations

import dataclasses
import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from dialects_kit import running_tls_server, self_signed_cert, trusting
from skylift_testkit import Fleet, Server, SimDevice, firmware, free_port, running_server


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


@pytest.fixture(scope="module")
def mqtt_tls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, Path, int]]:
    """Devices speak MQTT only over TLS: the plain port is off."""
    root = tmp_path_factory.mktemp("skylift-mqtt-tls")
    cert, key = self_signed_cert(root)
    tls_port = free_port()
    with running_server(
        root / "data",
        SKYLIFT_MQTT_TLS_PORT=str(tls_port),
        SKYLIFT_MQTT_TLS_CERT_FILE=str(cert),
        SKYLIFT_MQTT_TLS_KEY_FILE=str(key),
        SKYLIFT_MQTT_PLAIN_ENABLED="false",
    ) as server:
        yield server, cert, tls_port


def test_a_device_logs_in_over_mqtt_tls_and_upgrades(mqtt_tls_server: tuple[Server, Path, int]) -> None:
    server, cert, tls_port = mqtt_tls_server
    over_tls = dataclasses.replace(server, mqtt_port=tls_port)
    with server.api() as api:
        fleet = Fleet.create(api)
        device = fleet.device()
        sim = SimDevice.product_key(over_tls, device)
        sim.client.tls_set(ca_certs=str(cert))
        sim.connect()
        assert sim.connected
        campaign = fleet.campaign(fleet.package(firmware(2_000, seed=91), "1.0.2")["id"])
        assert sim.notice()["data"]["version"] == "1.0.2"
        sim.progress_004(100)
        sim.inform("1.0.2")
        fleet.wait_state(campaign["id"], device["id"], "succeeded")
        sim.disconnect()


def test_the_tls_port_refuses_plain_mqtt_and_the_plain_port_is_off(mqtt_tls_server: tuple[Server, Path, int]) -> None:
    server, _, tls_port = mqtt_tls_server
    with socket.create_connection(("127.0.0.1", tls_port), timeout=10) as plain:
        # A plain MQTT CONNECT (client id "x", clean session) is not a TLS ClientHello: closed, no CONNACK.
        plain.sendall(b"\x10\x0d\x00\x04MQTT\x04\x02\x00\x1e\x00\x01x")
        try:
            answer = plain.recv(4)
        except ConnectionResetError:
            answer = b""
        assert not answer.startswith(b"\x20")
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", server.mqtt_port), timeout=5).close()
