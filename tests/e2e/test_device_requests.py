"""A device asks for its upgrade (seed 004's request, Alibaba SDK's firmware/get) and gets the notice
of its open attempt, or "nothing pending"."""

from __future__ import annotations

import json

import httpx

from dialects_kit import next_raw
from skylift_testkit import Fleet, Server, SimDevice, firmware, md5


class TestRequestTopic:
    def test_a_campaign_without_push_is_delivered_when_the_device_asks(self, server: Server, api: httpx.Client) -> None:
        fleet = Fleet.create(api)
        fleet.module("MCU")
        device = fleet.device()
        sim = SimDevice.token(server, device).connect()
        image = firmware(3000, seed=60)
        package = fleet.package(image, "1.0.2", module="MCU")
        campaign = fleet.campaign(package["id"], push=False, ext_data={"k": "v"})
        assert sim.no_message(within=0.5)
        assert fleet.attempts(campaign["id"])[device["id"]]["state"] == "pending"

        request = {"id": "7", "params": {"version": "1.0.1", "module": "MCU"}}
        sim.publish(f"/ota/device/request/{sim.topic_id}", request)
        notice = sim.notice()
        assert notice["id"] == "7"  # the answer carries the request's id
        assert notice["code"] == 200
        params = notice["params"]
        assert params["version"] == "1.0.2"
        assert params["module"] == "MCU"
        assert params["sign"] == md5(image)
        assert params["extData"] == {"k": "v"}
        assert httpx.get(params["url"]).content == image
        attempt = fleet.wait_state(campaign["id"], device["id"], "upgrading")
        assert attempt["attempts"] == 1

        # Asking again (a reboot mid-upgrade) describes the same attempt again; it is not a new one.
        sim.publish(f"/ota/device/request/{sim.topic_id}", {"id": "8", "params": {"module": "MCU"}})
        again = sim.notice()
        assert again["id"] == "8"
        assert again["params"]["version"] == "1.0.2"
        assert httpx.get(again["params"]["url"]).status_code == 200
        assert fleet.attempts(campaign["id"])[device["id"]]["attempts"] == 1

        sim.progress_002(100, module="MCU")
        fleet.wait_state(campaign["id"], device["id"], "succeeded")
        sim.disconnect()

    def test_nothing_pending_for_a_token_device(self, server: Server, api: httpx.Client) -> None:
        fleet = Fleet.create(api)
        device = fleet.device()
        sim = SimDevice.token(server, device).connect()
        sim.publish(f"/ota/device/request/{sim.topic_id}", {"id": 1, "params": {"version": "1.0.1"}})
        assert sim.notice() == {"id": "1", "code": 200, "params": {}}
        sim.disconnect()

    def test_a_product_key_device_gets_its_own_envelope(self, server: Server, api: httpx.Client) -> None:
        fleet = Fleet.create(api)
        device = fleet.device()
        sim = SimDevice.product_key(server, device).connect()
        sim.publish(f"/ota/device/request/{sim.topic_id}", {"id": 11, "params": {"version": "1.0.1"}})
        assert sim.notice() == {"code": "1000", "data": {}, "id": 11, "message": "success"}

        image = firmware(2000, seed=61)
        campaign = fleet.campaign(fleet.package(image, "2.0.0")["id"], push=False)
        sim.publish(f"/ota/device/request/{sim.topic_id}", {"id": 12, "params": {"version": "1.0.1"}})
        notice = sim.notice()
        assert notice["code"] == "1000"
        assert notice["id"] == 12
        assert notice["data"]["md5"] == md5(image)
        assert notice["data"]["signMethod"] == "Md5"
        assert fleet.attempts(campaign["id"])[device["id"]]["state"] == "notified"
        sim.inform("2.0.0")
        fleet.wait_state(campaign["id"], device["id"], "succeeded")
        sim.disconnect()

    def test_a_request_for_another_module_finds_nothing(self, server: Server, api: httpx.Client) -> None:
        fleet = Fleet.create(api)
        fleet.module("MCU")
        device = fleet.device()
        sim = SimDevice.token(server, device).connect()
        campaign = fleet.campaign(fleet.package(firmware(100, seed=62), "3.0.0")["id"], push=False)
        sim.publish(f"/ota/device/request/{sim.topic_id}", {"id": "2", "params": {"module": "MCU"}})
        assert sim.notice()["params"] == {}
        assert fleet.attempts(campaign["id"])[device["id"]]["state"] == "pending"
        sim.disconnect()


class TestFirmwareGet:
    def test_the_alibaba_sdk_gets_the_notice_data_on_get_reply(self, server: Server, api: httpx.Client) -> None:
        fleet = Fleet.create(api)
        device = fleet.device()
        sim = SimDevice.product_key(server, device).connect()
        reply_topic = f"/sys/{sim.topic_id}/thing/ota/firmware/get_reply"
        assert not sim.subscribe(reply_topic)[0].is_failure

        sim.publish(f"/sys/{sim.topic_id}/thing/ota/firmware/get", {"id": "21", "version": "1.0", "params": {}})
        assert json.loads(next_raw(sim, reply_topic)) == {"code": 200, "data": {}, "id": "21", "message": "success"}

        image = firmware(4000, seed=63)
        campaign = fleet.campaign(fleet.package(image, "1.1.0", sign_method="SHA256")["id"], push=False)
        sim.publish(f"/sys/{sim.topic_id}/thing/ota/firmware/get", {"id": "22", "params": {"module": "default"}})
        reply = json.loads(next_raw(sim, reply_topic))
        assert reply["code"] == 200
        assert reply["id"] == "22"
        assert reply["message"] == "success"
        data = reply["data"]
        assert data["version"] == "1.1.0"
        assert data["size"] == len(image)
        assert data["md5"] == md5(image)
        assert data["signMethod"] == "SHA256"
        assert httpx.get(data["url"]).content == image
        fleet.wait_state(campaign["id"], device["id"], "upgrading")
        # The answer went to get_reply only, not also to the upgrade topic.
        assert sim.no_message(within=0.5)
        sim.disconnect()

    def test_a_device_may_not_ask_for_another_device(self, server: Server, api: httpx.Client) -> None:
        fleet = Fleet.create(api)
        mine, other = fleet.device(), fleet.device()
        campaign = fleet.campaign(fleet.package(firmware(100, seed=64), "1.2.0")["id"], push=False)
        sim = SimDevice.product_key(server, mine).connect()
        other_id = f"{other['product_key']}/{other['name']}"
        sim.publish(f"/sys/{other_id}/thing/ota/firmware/get", {"id": "1", "params": {}})
        sim.publish(f"/ota/device/request/{other_id}", {"id": "1", "params": {}})
        assert sim.no_message(within=0.5)
        assert fleet.attempts(campaign["id"])[other["id"]]["state"] == "pending"
        sim.disconnect()
