"""Alibaba's Link SDK 4 and Python SDK never SUBSCRIBE: `_ss=1` in their client id asks the platform to
subscribe them to their downlink topics, and they must hear their notices and replies all the same."""

from __future__ import annotations

import json
from typing import Any

import httpx

from dialects_kit import next_raw, signed_login
from skylift_testkit import Fleet, Server, SimDevice, firmware, unique, wait_until

TIMESTAMP = "2524608000000"  # the fixed timestamp Alibaba's C SDK signs


def sdk_device(server: Server, device: dict[str, Any], client_id: str | None = None) -> SimDevice:
    """A device logging in as Link SDK 4 does: signed with HMAC-SHA256, `_ss=1` among its parameters."""
    cid = client_id or unique("sdk")
    _, password = signed_login(device, "hmacsha256", client_id=cid, timestamp=TIMESTAMP)
    params = f"timestamp={TIMESTAMP},_ss=1,_v=sdk-c-4.1.0,securemode=2,signmethod=hmacsha256,ext=3,"
    return SimDevice.product_key(server, device, password=password, client_id=f"{cid}|{params}|")


def online(api: httpx.Client, device: dict[str, Any]) -> None:
    wait_until(lambda: api.get(f"/devices/{device['id']}").json()["online"], what="the device to be online")


class TestNeverSubscribing:
    def test_a_pushed_notice_reaches_it(self, server: Server, api: httpx.Client) -> None:
        fleet = Fleet.create(api)
        device = fleet.device()
        sim = sdk_device(server, device).connect(subscribe=False)
        online(api, device)
        campaign = fleet.campaign(fleet.package(firmware(700, seed=80), "1.0.1")["id"])
        assert sim.notice()["data"]["version"] == "1.0.1"
        fleet.wait_state(campaign["id"], device["id"], "notified")
        sim.disconnect()

    def test_a_notice_waiting_for_it_goes_out_when_it_connects(self, server: Server, api: httpx.Client) -> None:
        fleet = Fleet.create(api)
        device = fleet.device()
        package = fleet.package(firmware(700, seed=81), "1.0.2")
        campaign = fleet.campaign(package["id"], offline="deliver_on_connect")
        assert fleet.attempts(campaign["id"])[device["id"]]["state"] == "pending"
        # The platform's own subscription makes it ready: the notice goes out although it never subscribes.
        sim = sdk_device(server, device).connect(subscribe=False)
        assert sim.notice()["data"]["version"] == "1.0.2"
        fleet.wait_state(campaign["id"], device["id"], "notified")
        sim.disconnect()

    def test_firmware_get_is_answered_on_get_reply(self, server: Server, api: httpx.Client) -> None:
        fleet = Fleet.create(api)
        device = fleet.device()
        sim = sdk_device(server, device).connect(subscribe=False)
        fleet.campaign(fleet.package(firmware(900, seed=82), "1.1.0")["id"], push=False)
        sim.publish(f"/sys/{sim.topic_id}/thing/ota/firmware/get", {"id": "31", "params": {"module": "default"}})
        reply = json.loads(next_raw(sim, f"/sys/{sim.topic_id}/thing/ota/firmware/get_reply"))
        assert reply["id"] == "31"
        assert reply["data"]["version"] == "1.1.0"
        sim.disconnect()

    def test_a_device_without_the_flag_is_not_subscribed(self, server: Server, api: httpx.Client) -> None:
        fleet = Fleet.create(api)
        device = fleet.device()
        client_id, password = signed_login(device, "hmacsha256", client_id=unique("sdk"))
        sim = SimDevice.product_key(server, device, password=password, client_id=client_id).connect(subscribe=False)
        online(api, device)
        campaign = fleet.campaign(fleet.package(firmware(700, seed=83), "1.0.3")["id"])
        fleet.wait_state(campaign["id"], device["id"], "notified")
        assert sim.no_message(within=0.5)
        sim.disconnect()


class TestReconnecting:
    def test_every_connection_with_the_flag_is_subscribed_again(self, server: Server, api: httpx.Client) -> None:
        fleet = Fleet.create(api)
        device = fleet.device()
        client_id = unique("sdk")
        first = sdk_device(server, device, client_id).connect(subscribe=False)
        first.disconnect()
        wait_until(lambda: not api.get(f"/devices/{device['id']}").json()["online"], what="the device to go offline")
        # A clean session starts empty, and is subscribed afresh.
        again = sdk_device(server, device, client_id).connect(subscribe=False)
        online(api, device)
        campaign = fleet.campaign(fleet.package(firmware(700, seed=84), "1.0.4")["id"])
        assert again.notice()["data"]["version"] == "1.0.4"
        fleet.wait_state(campaign["id"], device["id"], "notified")
        again.disconnect()

    def test_a_takeover_connection_is_subscribed(self, server: Server, api: httpx.Client) -> None:
        fleet = Fleet.create(api)
        device = fleet.device()
        old = sdk_device(server, device).connect(subscribe=False)
        new = sdk_device(server, device).connect(subscribe=False)
        wait_until(lambda: not old.connected, what="the older connection to be closed")
        campaign = fleet.campaign(fleet.package(firmware(700, seed=85), "1.0.5")["id"], offline="deliver_on_connect")
        assert new.notice()["data"]["version"] == "1.0.5"
        fleet.wait_state(campaign["id"], device["id"], "notified")
        new.disconnect()
        old.client.loop_stop()


class TestSubscribingAsWell:
    def test_each_message_arrives_once(self, server: Server, api: httpx.Client) -> None:
        fleet = Fleet.create(api)
        device = fleet.device()
        sim = sdk_device(server, device).connect(subscribe=False)
        # The same filter as the platform's, and overlapping wildcards.
        for topic_filter in (f"/ota/device/upgrade/{sim.topic_id}", "/ota/device/upgrade/+/+", "#"):
            assert not sim.subscribe(topic_filter)[0].is_failure, topic_filter
        online(api, device)
        fleet.campaign(fleet.package(firmware(700, seed=86), "1.0.6")["id"])
        assert sim.notice()["data"]["version"] == "1.0.6"
        reply_topic = f"/sys/{sim.topic_id}/thing/ota/firmware/get_reply"
        sim.publish(f"/sys/{sim.topic_id}/thing/ota/firmware/get", {"id": "41", "params": {}})
        assert json.loads(next_raw(sim, reply_topic))["id"] == "41"
        assert sim.no_message(within=1.0)
        assert len(sim.notices) == 1
        sim.disconnect()
