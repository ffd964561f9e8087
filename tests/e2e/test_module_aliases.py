"""A module's alias names it wherever a module name is taken: uploads, filters, device messages."""

from __future__ import annotations

import httpx
import pytest

from skylift_testkit import Fleet, Server, SimDevice, firmware, wait_until


@pytest.fixture
def fleet(api: httpx.Client) -> Fleet:
    return Fleet.create(api)


def test_an_alias_is_accepted_where_a_module_name_is(server: Server, api: httpx.Client, fleet: Fleet) -> None:
    created = api.post("/modules", json={"product_id": fleet.product_id, "name": "MCU", "alias": "mcu"})
    assert created.status_code == 201, created.text
    package = fleet.package(firmware(200, seed=110), "2.0.0", module="mcu")
    assert package["module"] == "MCU"
    device = fleet.device()
    sim = SimDevice.token(server, device).connect()
    sim.inform("1.0.0", module="mcu")
    wait_until(lambda: api.get(f"/devices/{device['id']}").json()["versions"] == {"MCU": "1.0.0"})
    versions = api.get(f"/products/{fleet.product_id}/versions", params={"module": "mcu"}).json()
    assert versions == {"module": "MCU", "versions": {"1.0.0": 1}}
    cid = fleet.campaign(package["id"])["id"]
    assert sim.notice()["params"]["module"] == "MCU"
    sim.progress_002(100, module="mcu")  # progress naming the module by its alias
    fleet.wait_state(cid, device["id"], "succeeded")
    sim.disconnect()


def test_a_word_names_one_module(api: httpx.Client, fleet: Fleet) -> None:
    fleet.module("MCU")
    clash = api.post("/modules", json={"product_id": fleet.product_id, "name": "WIFI", "alias": "MCU"})
    assert (clash.status_code, clash.json()["error"]["field"]) == (409, "alias")
    wifi = fleet.module("WIFI")
    assert api.patch(f"/modules/{wifi['id']}", json={"alias": "main"}).status_code == 409
    assert api.patch(f"/modules/{wifi['id']}", json={"alias": "wifi"}).status_code == 200
    taken = api.post("/modules", json={"product_id": fleet.product_id, "name": "wifi"})
    assert (taken.status_code, taken.json()["error"]["field"]) == (409, "name")
    unknown = fleet.upload(firmware(100, seed=111), "1.0.0", module="gps")
    assert (unknown.status_code, unknown.json()["error"]["field"]) == (422, "module")
