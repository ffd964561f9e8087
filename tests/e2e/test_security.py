"""Who may do what: admin token, device credentials, topic ownership, signed URLs."""

from __future__ import annotations

import time

import httpx
import pytest

from skylift_testkit import Fleet, Server, SimDevice, firmware, unique, wait_until


class TestAdminApi:
    @pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic eDp5"}])
    def test_refused_without_the_admin_token(self, server: Server, headers: dict[str, str]) -> None:
        response = httpx.get(f"{server.http_url}/api/v1/products", headers=headers)
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "unauthorized"

    def test_openapi_is_served(self, server: Server) -> None:
        spec = httpx.get(f"{server.http_url}/openapi.json").json()
        assert "/api/v1/campaigns" in spec["paths"]
        assert httpx.get(f"{server.http_url}/docs").status_code == 200

    def test_no_broker_login_check_without_an_external_broker(self, server: Server) -> None:
        body = {"username": "anything", "password": "", "client_id": "c"}
        answer = httpx.post(f"{server.http_url}/broker/v1/login", json=body, headers={"Authorization": "Bearer x"})
        assert answer.status_code == 404
        assert answer.json()["error"]["code"] == "not_found"


class TestDeviceLogin:
    def test_wrong_token_is_refused(self, server: Server) -> None:
        sim = SimDevice(server, "no-such-token", None, "no-such-token")
        assert sim.try_connect().is_failure
        sim.disconnect()

    def test_wrong_secret_is_refused(self, server: Server, api: httpx.Client) -> None:
        device = Fleet.create(api).device()
        sim = SimDevice.product_key(server, device, password="not-the-secret")
        assert sim.try_connect().is_failure
        sim.disconnect()

    def test_a_failed_login_with_a_live_client_id_leaves_the_device_alone(
        self, server: Server, api: httpx.Client
    ) -> None:
        fleet = Fleet.create(api)
        device = fleet.device()
        client_id = unique("shared-id")
        victim = SimDevice.product_key(server, device, client_id=client_id).connect()
        impostor = SimDevice.product_key(server, device, password="guess", client_id=client_id)
        assert impostor.try_connect().is_failure
        impostor.disconnect()

        assert victim.connected
        assert api.get(f"/devices/{device['id']}").json()["online"] is True
        fleet.campaign(fleet.package(firmware(500, seed=20), "1.0.1")["id"])
        assert victim.notice()["data"]["version"] == "1.0.1"
        victim.disconnect()

    def test_a_new_connection_of_the_same_device_takes_over(self, server: Server, api: httpx.Client) -> None:
        fleet = Fleet.create(api)
        device = fleet.device()
        old = SimDevice.token(server, device, client_id="device-number-1").connect()
        new = SimDevice.token(server, device, client_id="device-number-2").connect()
        wait_until(lambda: not old.connected, what="the older connection to be closed")
        old.client.loop_stop()  # paho would reconnect by itself and take the device back
        # The old socket's disconnect must not mark the device offline while the new one is live.
        assert api.get(f"/devices/{device['id']}").json()["online"] is True
        fleet.campaign(fleet.package(firmware(500, seed=21), "1.0.2")["id"])
        assert new.notice()["params"]["version"] == "1.0.2"
        new.disconnect()


class TestTopicOwnership:
    def test_a_device_cannot_report_for_another(self, server: Server, api: httpx.Client) -> None:
        fleet = Fleet.create(api)
        mine, theirs = fleet.device(), fleet.device()
        sim = SimDevice.token(server, mine).connect()
        sim.publish(f"/ota/device/inform/{theirs['access_token']}", {"id": "1", "params": {"version": "6.6.6"}})
        sim.inform("1.0.0")
        wait_until(lambda: api.get(f"/devices/{mine['id']}").json()["versions"] == {"default": "1.0.0"})
        assert api.get(f"/devices/{theirs['id']}").json()["versions"] == {}
        sim.disconnect()

    def test_a_device_cannot_listen_to_another(self, server: Server, api: httpx.Client) -> None:
        fleet = Fleet.create(api)
        mine, theirs = fleet.device(), fleet.device()
        sim = SimDevice.token(server, mine).connect()
        assert sim.subscribe(f"/ota/device/upgrade/{theirs['access_token']}")[0].is_failure
        # Wildcards are granted, but deliver only what is sent to this device.
        assert not sim.subscribe("/ota/device/upgrade/+")[0].is_failure
        assert not sim.subscribe("#")[0].is_failure
        their_sim = SimDevice.token(server, theirs).connect()
        campaign = fleet.campaign(fleet.package(firmware(500, seed=22), "1.0.3")["id"], device_ids=[theirs["id"]])
        assert their_sim.notice()["params"]["version"] == "1.0.3"
        fleet.wait_state(campaign["id"], theirs["id"], "notified")
        assert sim.no_message(within=0.5)
        sim.disconnect()
        their_sim.disconnect()


class TestSignedUrls:
    def _file_url(self, api: httpx.Client, ttl: int) -> tuple[str, bytes]:
        fleet = Fleet.create(api)
        image = firmware(2048, seed=22)
        package = fleet.package(image, "1.0.0")
        response = api.post(
            f"/packages/{package['id']}/files/{package['files'][0]['id']}/url", json={"ttl_seconds": ttl}
        )
        assert response.status_code == 200, response.text
        return response.json()["url"], image

    def test_a_valid_url_downloads(self, api: httpx.Client) -> None:
        url, image = self._file_url(api, 60)
        assert httpx.get(url).content == image

    def test_an_expired_url_is_refused(self, api: httpx.Client) -> None:
        url, _ = self._file_url(api, 1)
        expires = int(httpx.URL(url).params["expires"])
        time.sleep(max(0.0, expires - time.time()) + 1.1)  # the clock must pass the URL's expiry
        response = httpx.get(url)
        assert response.status_code == 403
        assert response.json()["error"]["field"] == "signature"

    def test_a_tampered_url_is_refused(self, api: httpx.Client) -> None:
        url, _ = self._file_url(api, 60)
        longer = httpx.URL(url).copy_set_param("expires", str(int(time.time()) + 10**6))
        assert httpx.get(str(longer)).status_code == 403
        unsigned = httpx.URL(url).copy_remove_param("signature")
        assert httpx.get(str(unsigned)).status_code == 403


class TestRevokedCredentials:
    def test_a_disabled_device_is_dropped_and_refused(self, server: Server, api: httpx.Client) -> None:
        device = Fleet.create(api).device()
        sim = SimDevice.token(server, device).connect()
        disabled = api.patch(f"/devices/{device['id']}", json={"enabled": False})
        assert disabled.status_code == 200
        assert disabled.json()["enabled"] is False
        wait_until(lambda: not sim.connected, what="the live connection to be closed")
        sim.client.loop_stop()
        again = SimDevice.token(server, device)
        assert again.try_connect().is_failure
        again.disconnect()
        http = httpx.get(
            f"{server.http_url}/device/v1/upgrade", headers={"Authorization": f"Bearer {device['access_token']}"}
        )
        assert http.status_code == 401

        api.patch(f"/devices/{device['id']}", json={"enabled": True})
        back = SimDevice.token(server, device).connect()
        assert back.connected
        back.disconnect()

    def test_rotated_credentials_replace_the_old_ones(self, server: Server, api: httpx.Client) -> None:
        device = Fleet.create(api).device()
        sim = SimDevice.product_key(server, device).connect()
        rotated = api.post(f"/devices/{device['id']}/credentials")
        assert rotated.status_code == 200
        fresh = rotated.json()
        assert fresh["access_token"] != device["access_token"]
        assert fresh["device_secret"] != device["device_secret"]
        wait_until(lambda: not sim.connected, what="the live connection to be closed")
        sim.client.loop_stop()
        for old in (SimDevice.product_key(server, device), SimDevice.token(server, device)):
            assert old.try_connect().is_failure
            old.disconnect()
        new = SimDevice.product_key(server, fresh).connect()
        assert new.connected
        new.disconnect()
        actions = [
            e["action"]
            for e in api.get("/audit", params={"target_type": "device", "target_id": device["id"]}).json()["items"]
        ]
        assert actions == ["device.rotate_credentials", "device.create"]
