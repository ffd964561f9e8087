"""Devices without MQTT: report, check and progress over HTTP with their own credentials."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest

from dialects_kit import bearer, signed_headers
from skylift_testkit import Fleet, Server, firmware, md5


def device_api(server: Server, headers: dict[str, str]) -> httpx.Client:
    return httpx.Client(base_url=f"{server.http_url}/device/v1", headers=headers, timeout=30)


def versions(api: httpx.Client, device: dict[str, Any]) -> dict[str, str]:
    return dict(api.get(f"/devices/{device['id']}").json()["versions"])


class TestTokenDevice:
    def test_from_inform_to_succeeded(self, server: Server, api: httpx.Client) -> None:
        fleet = Fleet.create(api)
        device = fleet.device()
        with device_api(server, bearer(device)) as http:
            assert http.post("/inform", json={"id": "1", "params": {"version": "1.0.0"}}).status_code == 204
            assert versions(api, device) == {"default": "1.0.0"}
            assert http.get("/upgrade").status_code == 204

            image = firmware(20_000, seed=80)
            # An HTTP device is never connected, so its campaign waits for it to ask.
            campaign = fleet.campaign(fleet.package(image, "1.1.0")["id"], push=False)
            checked = http.get("/upgrade")
            assert checked.status_code == 200
            assert checked.headers["content-type"] == "application/json"
            notice = checked.json()
            assert notice["code"] == 200
            assert notice["params"]["version"] == "1.1.0"
            assert notice["params"]["sign"] == md5(image)
            assert fleet.attempts(campaign["id"])[device["id"]]["state"] == "notified"

            assert http.post("/progress", json={"step": "10", "desc": "downloading"}).status_code == 204
            assert fleet.attempts(campaign["id"])[device["id"]]["state"] == "downloading"
            assert httpx.get(notice["params"]["url"]).content == image
            fleet.wait_state(campaign["id"], device["id"], "upgrading")
            assert http.post("/progress", json={"step": "100", "desc": "done"}).status_code == 204
            attempt = fleet.attempts(campaign["id"])[device["id"]]
            assert attempt["state"] == "succeeded"
            assert attempt["attempts"] == 1
            assert http.post("/inform", json={"id": "2", "params": {"version": "1.1.0"}}).status_code == 204
            assert versions(api, device) == {"default": "1.1.0"}
            assert http.get("/upgrade").status_code == 204
        assert api.get(f"/devices/{device['id']}").json()["last_seen_at"] is not None


class TestProductKeyDevice:
    def test_signed_requests_from_inform_to_succeeded(self, server: Server, api: httpx.Client) -> None:
        fleet = Fleet.create(api)
        fleet.module("MCU")
        device = fleet.device()

        def http() -> httpx.Client:
            return device_api(server, signed_headers(device))

        with http() as client:
            response = client.post("/inform", json={"id": 1, "params": {"version": "0.9", "module": "MCU"}})
            assert response.status_code == 204
        image = firmware(5_000, seed=81)
        campaign = fleet.campaign(fleet.package(image, "1.0", module="MCU")["id"], push=False)
        with http() as client:
            assert client.get("/upgrade").status_code == 204  # the default module has nothing
            notice = client.get("/upgrade", params={"module": "MCU"}).json()
        assert notice["code"] == "1000"
        assert notice["message"] == "success"
        assert notice["data"]["module"] == "MCU"
        assert notice["data"]["md5"] == md5(image)
        with http() as client:
            client.post("/progress", json={"id": 1, "params": {"step": "50", "desc": "flashing", "module": "MCU"}})
            client.post("/inform", json={"id": 2, "params": {"version": "1.0", "module": "MCU"}})
        assert fleet.attempts(campaign["id"])[device["id"]]["state"] == "succeeded"
        assert versions(api, device) == {"MCU": "1.0"}


class TestRefused:
    @pytest.fixture
    def device(self, api: httpx.Client) -> dict[str, Any]:
        return Fleet.create(api).device()

    def test_without_credentials(self, server: Server) -> None:
        response = httpx.get(f"{server.http_url}/device/v1/upgrade")
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "unauthorized"

    def test_with_a_wrong_token(self, server: Server) -> None:
        response = httpx.get(f"{server.http_url}/device/v1/upgrade", headers={"Authorization": "Bearer nope"})
        assert response.status_code == 401

    def test_with_the_admin_token(self, server: Server) -> None:
        response = httpx.get(
            f"{server.http_url}/device/v1/upgrade", headers=bearer({"access_token": server.admin_token})
        )
        assert response.status_code == 401

    def test_with_a_signature_from_another_secret(self, server: Server, device: dict[str, Any]) -> None:
        headers = signed_headers(device, secret="not-the-secret")
        assert httpx.get(f"{server.http_url}/device/v1/upgrade", headers=headers).status_code == 401

    @pytest.mark.parametrize("skew_ms", [-6 * 60_000, 6 * 60_000])
    def test_with_a_stale_or_future_timestamp(self, server: Server, device: dict[str, Any], skew_ms: int) -> None:
        headers = signed_headers(device, now_ms=int(time.time() * 1000) + skew_ms)
        assert httpx.get(f"{server.http_url}/device/v1/upgrade", headers=headers).status_code == 401

    def test_malformed_bodies_are_422_and_change_nothing(self, server: Server, api: httpx.Client) -> None:
        device = Fleet.create(api).device()
        with device_api(server, bearer(device)) as http:
            for body in (b"not json", b'{"params": {"version": 7}}', b"[1]"):
                response = http.post("/inform", content=body)
                assert response.status_code == 422, body
                assert response.json()["error"]["code"] == "invalid"
            assert http.post("/progress", content=b'{"step": "101"}').status_code == 422
            assert http.post("/progress", content=b'{"step": "5", "desc": "' + b"x" * 70_000 + b'"}').status_code == 413
        assert versions(api, device) == {}
