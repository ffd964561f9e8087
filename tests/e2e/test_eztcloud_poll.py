"""EZtCloud devices (seed 003) over real MQTT: property reports, otaCheck polls answered with
otaUpgrade on command_send, replies and progress, push campaigns on command_send, and the version
property per module. Payloads are the seed's own."""

from __future__ import annotations

from typing import Any

import httpx

from dialects_kit import EztDevice
from skylift_testkit import Fleet, Server, firmware, md5, wait_until

CHECK = {"method": "otaCheck", "params": {}, "id": 1000}


def nothing_newer(module: str = "main", message_id: int = 1000) -> dict[str, Any]:
    return {
        "method": "otaUpgrade",
        "params": {"module": module, "upgrade": False},
        "command_name": "OTA升级",
        "id": message_id,
    }


def versions_of(api: httpx.Client, device: dict[str, Any]) -> dict[str, str]:
    return dict(api.get(f"/devices/{device['id']}").json()["versions"])


def latest_campaign(api: httpx.Client, package_id: int) -> dict[str, Any]:
    items = api.get("/campaigns", params={"package_id": package_id}).json()["items"]
    found = [c for c in items if c["target"].get("latest")]
    assert len(found) == 1, items
    return dict(found[0])


class TestPollWithLatestForEveryone:
    def test_upgrade_false_then_true_then_succeeded(self, server: Server, api: httpx.Client) -> None:
        fleet = Fleet.create(api, auto_upgrade_latest=True)
        assert fleet.product["auto_upgrade_latest"] is True
        device = fleet.device()
        ezt = EztDevice(server, device).connect()
        ezt.publish("attributes", {"version": "1.0.0"})
        wait_until(lambda: versions_of(api, device) == {"default": "1.0.0"}, what="the version property")

        ezt.publish("event_report", CHECK)
        assert ezt.command() == nothing_newer()

        image = firmware(5000, seed=300)
        package = fleet.package(image, "1.0.1")
        fleet.package(firmware(100, seed=301), "0.9.0")  # older: never offered
        ezt.publish("event_report", CHECK)
        command = ezt.command()
        assert command == {
            "method": "otaUpgrade",
            "params": {
                "module": "main",
                "upgrade": True,
                "version": "1.0.1",
                "url": command["params"]["url"],
                "size": len(image),
                "md5": md5(image),
            },
            "command_name": "OTA升级",
            "id": 1000,
        }
        # The answer is tracked: an attempt in the package's implicit campaign.
        campaign = latest_campaign(api, package["id"])
        assert campaign["push"] is False
        assert campaign["state"] == "running"
        assert fleet.attempts(campaign["id"])[device["id"]]["state"] == "notified"

        assert httpx.get(command["params"]["url"]).content == image
        fleet.wait_state(campaign["id"], device["id"], "upgrading")
        # A periodic property report of the unchanged version is not a failed upgrade.
        ezt.publish("attributes", {"version": "1.0.0", "rssi": -60})
        ezt.publish("command_reply", {"method": "otaUpgrade", "id": 1000, "result": {"step": 80, "desc": "flashing"}})
        wait_until(lambda: fleet.attempts(campaign["id"])[device["id"]]["progress"] == 80, what="progress 80")
        # Asking again mid-upgrade describes the same attempt.
        ezt.publish("event_report", {"method": "otaCheck", "params": {"module": "main"}, "id": 1001})
        again = ezt.command()
        assert again["id"] == 1001
        assert again["params"]["version"] == "1.0.1"
        assert fleet.attempts(campaign["id"])[device["id"]]["attempts"] == 1

        ezt.publish("attributes", {"version": "1.0.1", "rssi": -61})
        attempt = fleet.wait_state(campaign["id"], device["id"], "succeeded")
        assert attempt["progress"] == 100
        ezt.publish("event_report", CHECK)
        assert ezt.command() == nothing_newer()
        ezt.disconnect()

    def test_the_flag_decides_and_can_be_changed(self, server: Server, api: httpx.Client) -> None:
        fleet = Fleet.create(api)
        assert fleet.product["auto_upgrade_latest"] is False
        device = fleet.device()
        ezt = EztDevice(server, device, product_key_login=True).connect()
        ezt.publish("attributes", {"version": "v2.0"})
        wait_until(lambda: versions_of(api, device) == {"default": "v2.0"})
        fleet.package(firmware(300, seed=302), "2.1.0")
        ezt.publish("event_report", CHECK)
        assert ezt.command() == nothing_newer()

        response = api.patch(f"/products/{fleet.product_id}", json={"auto_upgrade_latest": True})
        assert response.status_code == 200, response.text
        assert response.json()["auto_upgrade_latest"] is True
        ezt.publish("event_report", {"method": "otaCheck", "params": {"module": "default"}, "id": 7})
        command = ezt.command()
        assert command["id"] == 7
        assert command["params"]["module"] == "default"  # named as the device named it
        assert command["params"]["upgrade"] is True
        assert command["params"]["version"] == "2.1.0"
        ezt.disconnect()

    def test_a_failed_reply_fails_the_attempt_and_a_new_check_retries(self, server: Server, api: httpx.Client) -> None:
        fleet = Fleet.create(api, auto_upgrade_latest=True)
        device = fleet.device()
        ezt = EztDevice(server, device).connect()
        ezt.publish("attributes", {"version": "1.0.0"})
        wait_until(lambda: versions_of(api, device) == {"default": "1.0.0"})
        package = fleet.package(firmware(200, seed=303), "1.2.0")
        ezt.publish("event_report", CHECK)
        assert ezt.command()["params"]["upgrade"] is True
        campaign = latest_campaign(api, package["id"])
        ezt.publish("command_reply", {"method": "otaUpgrade", "id": 1000, "result": {"code": 0}})  # only an ack
        ezt.publish("command_reply", {"id": 1000, "result": {"code": 500, "message": "flash write error"}})
        attempt = fleet.wait_state(campaign["id"], device["id"], "failed")
        assert attempt["failure_reason"] == "upgrade failed"
        assert attempt["step_desc"] == "flash write error"

        ezt.publish("event_report", CHECK)
        assert ezt.command()["params"]["version"] == "1.2.0"
        retried = fleet.attempts(campaign["id"])[device["id"]]
        assert (retried["state"], retried["attempts"]) == ("notified", 2)
        # 002-style progress on /ota/device/progress/{token} keeps working for the same attempt.
        ezt.sim.progress_002(100)
        fleet.wait_state(campaign["id"], device["id"], "succeeded")
        ezt.disconnect()

    def test_without_a_reported_version_nothing_is_offered(self, server: Server, api: httpx.Client) -> None:
        fleet = Fleet.create(api, auto_upgrade_latest=True)
        ezt = EztDevice(server, fleet.device()).connect()
        fleet.package(firmware(100, seed=304), "1.0.0")
        ezt.publish("event_report", {"method": "otaCheck", "params": {}})
        command = ezt.command()
        assert command["params"] == {"module": "main", "upgrade": False}
        assert isinstance(command["id"], int)  # a fresh id when the check carried none
        ezt.disconnect()


class TestPollWithCampaigns:
    def test_a_campaign_without_push_answers_the_check(self, server: Server, api: httpx.Client) -> None:
        fleet = Fleet.create(api)
        device = fleet.device()
        ezt = EztDevice(server, device, product_key_login=True).connect()
        ezt.publish("attributes", {"version": "1.0.0"})
        wait_until(lambda: versions_of(api, device) == {"default": "1.0.0"})
        ezt.publish("event_report", CHECK)
        assert ezt.command() == nothing_newer()

        image = firmware(2500, seed=305)
        campaign = fleet.campaign(fleet.package(image, "1.1.5")["id"], push=False)
        ezt.publish("event_report", CHECK)
        params = ezt.command()["params"]
        assert (params["module"], params["upgrade"], params["version"]) == ("main", True, "1.1.5")
        assert (params["size"], params["md5"]) == (len(image), md5(image))
        assert httpx.get(params["url"]).content == image
        ezt.publish("command_reply", {"method": "otaUpgrade", "id": 1000, "params": {"step": "100", "desc": "done"}})
        fleet.wait_state(campaign["id"], device["id"], "succeeded")
        ezt.disconnect()

    def test_a_push_campaign_reaches_command_send(self, server: Server, api: httpx.Client) -> None:
        fleet = Fleet.create(api)
        device = fleet.device()
        image = firmware(700, seed=306)
        package = fleet.package(image, "3.0.0")
        # Created while the device is away: it hears the command once it subscribes to command_send.
        campaign = fleet.campaign(package["id"], offline="deliver_on_connect", ext_data={"k": "v"})
        assert fleet.attempts(campaign["id"])[device["id"]]["state"] == "pending"
        ezt = EztDevice(server, device).connect()
        command = ezt.command()
        assert command["method"] == "otaUpgrade"
        assert command["command_name"] == "OTA升级"
        params = command["params"]
        assert (params["module"], params["upgrade"], params["version"]) == ("main", True, "3.0.0")
        assert params["md5"] == md5(image)
        assert params["extData"] == {"k": "v"}
        assert api.get(f"/devices/{device['id']}").json()["notice_channel"] == "eztcloud"
        fleet.wait_state(campaign["id"], device["id"], "notified")
        ezt.publish("attributes", {"version": "3.0.0"})
        fleet.wait_state(campaign["id"], device["id"], "succeeded")
        ezt.disconnect()

    def test_a_device_listens_only_on_its_own_username(self, server: Server, api: httpx.Client) -> None:
        fleet = Fleet.create(api)
        mine, other = fleet.device(), fleet.device()
        ezt = EztDevice(server, mine).connect()
        assert ezt.sim.subscribe(f"command_send/{other['access_token']}")[0].is_failure
        # A wildcard is granted, but delivers only what is sent to this device.
        assert not ezt.sim.subscribe("command_send/+")[0].is_failure
        # A check published on another device's topic is dropped by the broker: no answer.
        ezt.sim.publish(f"event_report/{other['access_token']}", CHECK)
        assert ezt.sim.no_message(within=0.5)
        ezt.disconnect()


class TestVersionProperties:
    def test_each_module_has_its_property(self, server: Server, api: httpx.Client) -> None:
        fleet = Fleet.create(api, auto_upgrade_latest=True)
        mcu = fleet.module("MCU")
        assert mcu["version_property"] == "mcu_version"
        response = api.post(
            "/modules", json={"product_id": fleet.product_id, "name": "GPS", "version_property": "gps_ver"}
        )
        assert response.status_code == 201, response.text
        device = fleet.device()
        ezt = EztDevice(server, device).connect()
        ezt.publish("attributes", {"version": "1.0.0", "mcu_version": 2.1, "gps_ver": "3", "temp": 21.5})
        expected = {"default": "1.0.0", "MCU": "2.1", "GPS": "3"}
        wait_until(lambda: versions_of(api, device) == expected, what="a version per module")

        image = firmware(900, seed=307)
        fleet.package(image, "2.2", module="MCU")
        ezt.publish("event_report", {"method": "otaCheck", "params": {"module": "MCU"}, "id": 5})
        params = ezt.command()["params"]
        assert (params["module"], params["upgrade"], params["version"]) == ("MCU", True, "2.2")
        ezt.publish("event_report", CHECK)  # nothing newer for the main module
        assert ezt.command() == nothing_newer()

        default = next(m for m in api.get(f"/products/{fleet.product_id}").json()["modules"] if m["name"] == "default")
        assert default["version_property"] == "version"
        response = api.patch(f"/modules/{default['id']}", json={"version_property": "fw_version"})
        assert response.status_code == 200, response.text
        ezt.publish("attributes", {"fw_version": "1.0.5", "version": "9.9.9"})
        wait_until(lambda: versions_of(api, device)["default"] == "1.0.5", what="the renamed property")
        ezt.disconnect()

    def test_a_property_stands_for_one_module(self, api: httpx.Client) -> None:
        fleet = Fleet.create(api)
        fleet.module("MCU")
        response = api.post(
            "/modules", json={"product_id": fleet.product_id, "name": "GPS", "version_property": "mcu_version"}
        )
        assert response.status_code == 409
        assert response.json()["error"]["field"] == "version_property"
        response = api.post("/modules", json={"product_id": fleet.product_id, "name": "X", "version_property": "a b"})
        assert response.status_code == 422
        assert response.json()["error"]["field"] == "version_property"
        assert api.patch("/modules/999999", json={"alias": "x"}).status_code == 404
        assert api.patch(f"/products/{fleet.product_id}", json={"product_key": "x"}).status_code == 422
