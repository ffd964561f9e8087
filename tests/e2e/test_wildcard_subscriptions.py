"""Devices subscribe to their own topics as their SDKs do, wildcards included; whatever the filter, a
device receives only what is sent to it (never another device's messages, retained ones, or wills)."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from dialects_kit import next_raw
from skylift_testkit import Fleet, Server, SimDevice, firmware, wait_until


def online(api: httpx.Client, device: dict[str, Any]) -> None:
    wait_until(lambda: api.get(f"/devices/{device['id']}").json()["online"], what="the device to be online")


def subscribed(sim: SimDevice, *filters: str) -> SimDevice:
    for topic_filter in filters:
        codes = sim.subscribe(topic_filter)
        assert not codes[0].is_failure, (topic_filter, codes)
    return sim


class TestGranted:
    def test_the_filters_alibaba_sdks_use(self, server: Server, api: httpx.Client) -> None:
        device = Fleet.create(api).device()
        sim = SimDevice.product_key(server, device).connect(subscribe=False)
        own = sim.topic_id
        subscribed(
            sim,
            f"/ota/device/request/{own}",  # Alibaba's C SDK 3.x
            f"/ota/device/request/{device['access_token']}",
            f"/ota/device/inform/{own}",
            f"/ota/device/progress/{own}",
            f"/ota/device/+/{own}",
            "/ota/device/upgrade/+/+",
            "/sys/+/+/thing/ota/firmware/get_reply",
            f"/sys/{own}/#",
            "#",
        )
        sim.disconnect()

    def test_filters_that_can_match_none_of_its_topics_are_refused(self, server: Server, api: httpx.Client) -> None:
        fleet = Fleet.create(api)
        device, other = fleet.device(), fleet.device()
        sim = SimDevice.product_key(server, device).connect(subscribe=False)
        theirs = f"{other['product_key']}/{other['name']}"
        for topic_filter in (f"/ota/device/upgrade/{theirs}", f"/ota/device/+/{theirs}", f"/sys/{theirs}/#"):
            assert sim.subscribe(topic_filter)[0].is_failure, topic_filter
        sim.disconnect()


class TestDelivery:
    @pytest.mark.parametrize("topic_filter", ["#", "/ota/device/upgrade/+/+"])
    def test_each_device_hears_only_its_own_notice(self, server: Server, api: httpx.Client, topic_filter: str) -> None:
        fleet = Fleet.create(api)
        first, second = fleet.device(), fleet.device()
        sims = {
            device["id"]: subscribed(SimDevice.product_key(server, device).connect(subscribe=False), topic_filter)
            for device in (first, second)
        }
        for device in (first, second):
            online(api, device)
        for n, device in enumerate((first, second)):
            version = f"2.0.{n}"
            campaign = fleet.campaign(
                fleet.package(firmware(600, seed=90 + n), version)["id"], device_ids=[device["id"]]
            )
            assert sims[device["id"]].notice()["data"]["version"] == version
            fleet.wait_state(campaign["id"], device["id"], "notified")
        for sim in sims.values():
            assert sim.no_message(within=0.5)
            assert len(sim.notices) == 1
            sim.disconnect()

    def test_a_wildcard_covering_the_upgrade_topic_makes_the_device_ready(
        self, server: Server, api: httpx.Client
    ) -> None:
        fleet = Fleet.create(api)
        device = fleet.device()
        campaign = fleet.campaign(fleet.package(firmware(600, seed=92), "2.1.0")["id"], offline="deliver_on_connect")
        sim = SimDevice.product_key(server, device).connect(subscribe=False)
        subscribed(sim, "/ota/device/upgrade/+/+")
        assert sim.notice()["data"]["version"] == "2.1.0"
        fleet.wait_state(campaign["id"], device["id"], "notified")
        sim.disconnect()

    def test_replies_on_a_sys_wildcard_and_no_echo_of_its_own_requests(self, server: Server, api: httpx.Client) -> None:
        device = Fleet.create(api).device()
        sim = subscribed(
            SimDevice.product_key(server, device).connect(subscribe=False), f"/sys/{device['product_key']}/+/#"
        )
        sim.publish(f"/sys/{sim.topic_id}/thing/ota/firmware/get", {"id": "51", "params": {}})
        reply = json.loads(next_raw(sim, f"/sys/{sim.topic_id}/thing/ota/firmware/get_reply"))
        assert reply["id"] == "51"
        assert sim.no_message(within=0.5)
        sim.disconnect()


class TestRetainedAndWills:
    def test_retained_messages_of_another_device_are_not_replayed(self, server: Server, api: httpx.Client) -> None:
        fleet = Fleet.create(api)
        publisher_device, listener_device = fleet.device(), fleet.device()
        publisher = SimDevice.product_key(server, publisher_device).connect(subscribe=False)
        info = publisher.client.publish(
            f"/ota/device/inform/{publisher.topic_id}",
            json.dumps({"id": "1", "params": {"version": "1.0.0"}}),
            qos=1,
            retain=True,
        )
        info.wait_for_publish(timeout=10)
        wait_until(lambda: api.get(f"/devices/{publisher_device['id']}").json()["versions"] == {"default": "1.0.0"})

        listener = subscribed(SimDevice.product_key(server, listener_device).connect(subscribe=False), "#")
        online(api, listener_device)
        campaign = fleet.campaign(
            fleet.package(firmware(600, seed=93), "2.2.0")["id"], device_ids=[listener_device["id"]]
        )
        # The first thing it hears is its own notice; nothing before or after.
        assert listener.notice()["data"]["version"] == "2.2.0"
        fleet.wait_state(campaign["id"], listener_device["id"], "notified")
        assert listener.no_message(within=0.5)
        publisher.disconnect()
        listener.disconnect()

    def test_a_will_on_another_devices_topic_refuses_the_connect(self, server: Server, api: httpx.Client) -> None:
        fleet = Fleet.create(api)
        forger_device, victim_device = fleet.device(), fleet.device()
        victim = subscribed(SimDevice.product_key(server, victim_device).connect(subscribe=False), "#")
        forger = SimDevice.product_key(server, forger_device)
        forged = {"code": "1000", "data": {"version": "6.6.6", "url": "http://evil.example/fw.bin"}, "id": 1}
        victim_topic = f"/ota/device/upgrade/{victim.topic_id}"
        forger.client.will_set(victim_topic, json.dumps(forged), qos=1, retain=True)
        reason = forger.try_connect()
        assert reason.is_failure, reason
        assert "authorized" in str(reason).lower(), reason
        forger.disconnect()
        assert not api.get(f"/devices/{forger_device['id']}").json()["online"]

        online(api, victim_device)
        fleet.campaign(fleet.package(firmware(600, seed=94), "2.3.0")["id"], device_ids=[victim_device["id"]])
        assert victim.notice()["data"]["version"] == "2.3.0"
        assert victim.no_message(within=0.5)
        assert [notice["data"]["version"] for notice in victim.notices] == ["2.3.0"]
        victim.disconnect()

    def test_a_will_on_its_own_topic_is_accepted(self, server: Server, api: httpx.Client) -> None:
        device = Fleet.create(api).device()
        sim = SimDevice.product_key(server, device)
        sim.client.will_set(f"/ota/device/progress/{sim.topic_id}", '{"params":{"step":"-1","desc":"lost"}}', qos=1)
        sim.connect()
        assert sim.connected
        sim.disconnect()
