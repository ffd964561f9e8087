"""EZtCloud gateways (seed 003) over real MQTT: a gateway reports, checks and replies for its
sub-devices in the `{"device": ..., ...}` envelope, receives their commands on
gateway_command_send, and is refused for any device that is not its own."""

from __future__ import annotations

from typing import Any

import httpx

from dialects_kit import EztDevice, malformed_total
from skylift_testkit import Fleet, Server, firmware, md5, unique, wait_until


def sub_device(fleet: Fleet, gateway: dict[str, Any], address: str) -> dict[str, Any]:
    response = fleet.api.post(
        "/devices",
        json={"product_id": fleet.product_id, "name": unique("sub"), "gateway_id": gateway["id"], "address": address},
    )
    assert response.status_code == 201, response.text
    body = dict(response.json())
    assert (body["gateway_id"], body["address"], body["notice_channel"]) == (gateway["id"], address, "gateway")
    return body


def device_json(api: httpx.Client, device: dict[str, Any]) -> dict[str, Any]:
    return dict(api.get(f"/devices/{device['id']}").json())


class TestGatewayUpgradesSubDevices:
    def test_two_sub_devices_one_by_check_one_by_push(self, server: Server, api: httpx.Client) -> None:
        gateways = Fleet.create(api)
        sensors = Fleet.create(api, auto_upgrade_latest=True)  # the sub-devices' own product
        gateway = gateways.device()
        first = sub_device(sensors, gateway, "DEVICE1")
        gw = EztDevice(server, gateway).connect(gateway=True)
        wait_until(lambda: device_json(api, first)["online"], what="the sub-device to be reachable")

        gw.publish("gateway_attributes", {"device": "DEVICE1", "values": {"version": "1.0.0"}})
        wait_until(lambda: device_json(api, first)["versions"] == {"default": "1.0.0"})
        # Registered while the gateway listens: reachable at once.
        second = sub_device(sensors, gateway, "DEVICE2")
        assert device_json(api, second)["online"] is True
        gw.publish("gateway_attributes", {"device": "DEVICE2", "values": {"version": "1.0.0"}})
        wait_until(lambda: device_json(api, second)["versions"] == {"default": "1.0.0"})

        gw.publish(
            "gateway_event_report", {"device": "DEVICE1", "event": {"method": "otaCheck", "params": {}, "id": 1000}}
        )
        assert gw.gateway_command() == {
            "device": "DEVICE1",
            "command": {
                "method": "otaUpgrade",
                "params": {"module": "main", "upgrade": False},
                "command_name": "OTA升级",
                "id": 1000,
            },
        }

        image = firmware(3000, seed=320)
        package = sensors.package(image, "1.0.1")
        gw.publish(
            "gateway_event_report", {"device": "DEVICE1", "event": {"method": "otaCheck", "params": {}, "id": 1001}}
        )
        answer = gw.gateway_command()
        assert answer["device"] == "DEVICE1"
        command = answer["command"]
        assert (command["method"], command["command_name"], command["id"]) == ("otaUpgrade", "OTA升级", 1001)
        params = command["params"]
        assert (params["module"], params["upgrade"], params["version"]) == ("main", True, "1.0.1")
        assert (params["size"], params["md5"]) == (len(image), md5(image))
        assert httpx.get(params["url"]).content == image

        # DEVICE2 by push; deliver_on_connect waits for a listening gateway, which this one is.
        campaign = sensors.campaign(package["id"], device_ids=[second["id"]], offline="deliver_on_connect")
        pushed = gw.gateway_command()
        assert pushed["device"] == "DEVICE2"
        assert pushed["command"]["params"]["version"] == "1.0.1"
        sensors.wait_state(campaign["id"], second["id"], "notified")

        reply = {"method": "otaUpgrade", "id": pushed["command"]["id"], "result": {"step": 100, "desc": "ok"}}
        gw.publish("gateway_command_reply", {"device": "DEVICE2", "command": reply})
        sensors.wait_state(campaign["id"], second["id"], "succeeded")
        gw.publish("gateway_attributes", {"device": "DEVICE1", "values": {"version": "1.0.1"}})
        wait_until(lambda: device_json(api, first)["versions"] == {"default": "1.0.1"})
        latest = next(
            c
            for c in api.get("/campaigns", params={"package_id": package["id"]}).json()["items"]
            if c["target"].get("latest")
        )
        sensors.wait_state(latest["id"], first["id"], "succeeded")

        gw.disconnect()
        wait_until(lambda: not device_json(api, second)["online"], what="sub-devices to go offline with the gateway")

    def test_a_push_waits_for_the_gateway_to_listen(self, server: Server, api: httpx.Client) -> None:
        fleet = Fleet.create(api)
        gateway = fleet.device()
        child = sub_device(fleet, gateway, "node-7")
        campaign = fleet.campaign(
            fleet.package(firmware(400, seed=321), "2.0.0")["id"],
            device_ids=[child["id"]],
            offline="deliver_on_connect",
        )
        assert fleet.attempts(campaign["id"])[child["id"]]["state"] == "pending"
        gw = EztDevice(server, gateway, product_key_login=True).connect(listen=False, gateway=True)
        pushed = gw.gateway_command()
        assert pushed["device"] == "node-7"
        assert pushed["command"]["params"]["upgrade"] is True
        gw.publish(
            "gateway_command_reply",
            {"device": "node-7", "reply": {"id": 1, "result": {"step": -2, "desc": "no space"}}},
        )
        attempt = fleet.wait_state(campaign["id"], child["id"], "failed")
        assert attempt["failure_reason"] == "download failed"
        gw.disconnect()

    def test_a_gateway_that_unsubscribes_relays_nothing_until_it_subscribes_again(
        self, server: Server, api: httpx.Client
    ) -> None:
        fleet = Fleet.create(api)
        gateway = fleet.device()
        child = sub_device(fleet, gateway, "node-9")
        gw = EztDevice(server, gateway, product_key_login=True).connect(listen=False, gateway=True)
        relay_topic = f"gateway_command_send/{gw.username}"
        unsubscribed: list[int] = []
        gw.sim.client.on_unsubscribe = lambda _c, _u, mid, _codes, _p: unsubscribed.append(mid)
        mid = gw.sim.client.unsubscribe(relay_topic)[1]
        wait_until(lambda: mid in unsubscribed, what="UNSUBACK")
        campaign = fleet.campaign(
            fleet.package(firmware(400, seed=322), "2.0.0")["id"],
            device_ids=[child["id"]],
            offline="deliver_on_connect",
        )
        assert gw.sim.no_message(within=1.5)
        assert fleet.attempts(campaign["id"])[child["id"]]["state"] == "pending"
        assert not gw.sim.subscribe(relay_topic)[0].is_failure
        assert gw.gateway_command()["device"] == "node-9"
        fleet.wait_state(campaign["id"], child["id"], "notified")
        gw.disconnect()


class TestGatewayActsOnlyForItsOwn:
    def test_messages_for_other_devices_are_refused(self, server: Server, api: httpx.Client) -> None:
        fleet = Fleet.create(api, auto_upgrade_latest=True)
        gateway, other_gateway = fleet.device(), fleet.device()
        mine = sub_device(fleet, gateway, "DEVICE1")
        theirs = sub_device(fleet, other_gateway, "DEVICE9")
        plain = fleet.device()
        fleet.package(firmware(100, seed=322), "5.0.0")
        gw = EztDevice(server, gateway).connect(gateway=True)
        before = malformed_total(server)

        gw.publish("gateway_attributes", {"device": "DEVICE9", "values": {"version": "1.0.0"}})
        gw.publish("gateway_attributes", {"device": plain["name"], "values": {"version": "1.0.0"}})
        gw.publish(
            "gateway_event_report", {"device": "DEVICE9", "event": {"method": "otaCheck", "params": {}, "id": 1}}
        )
        gw.publish("gateway_command_reply", {"device": "NOBODY", "command": {"id": 1, "result": {"step": 100}}})
        wait_until(lambda: malformed_total(server) >= before + 4, what="the refusals to be counted")
        assert gw.sim.no_message(within=0.5)
        assert device_json(api, theirs)["versions"] == {}
        assert device_json(api, plain)["versions"] == {}
        # Another gateway's topics are out of reach altogether.
        assert gw.sim.subscribe(f"gateway_command_send/{other_gateway['access_token']}")[0].is_failure

        gw.publish("gateway_attributes", {"device": "DEVICE1", "values": {"version": "1.0.0"}})
        wait_until(lambda: device_json(api, mine)["versions"] == {"default": "1.0.0"})
        gw.disconnect()


class TestRegistration:
    def test_sub_device_fields_are_checked(self, api: httpx.Client) -> None:
        fleet = Fleet.create(api)
        gateway = fleet.device()
        child = sub_device(fleet, gateway, "A1")

        def register(**fields: Any) -> httpx.Response:
            return api.post("/devices", json={"product_id": fleet.product_id, "name": unique("d"), **fields})

        cases = [
            (register(address="A2"), 422, "gateway_id"),
            (register(gateway_id=gateway["id"]), 422, "address"),
            (register(gateway_id=999_999, address="A2"), 404, "gateway_id"),
            (register(gateway_id=gateway["id"], address="A1"), 409, "address"),
            (register(gateway_id=child["id"], address="A3"), 422, "gateway_id"),
            (register(gateway_id=gateway["id"], address="has space"), 422, "address"),
        ]
        for response, status, field in cases:
            assert response.status_code == status, response.text
            assert response.json()["error"]["field"] == field
        # The same address under another gateway is fine.
        sub_device(fleet, fleet.device(), "A1")
