"""Lists page, filter strictly, and refuse what they do not understand (unknown parameters and fields)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from skylift_testkit import Fleet, Server, SimDevice, firmware, unique, wait_until


@pytest.fixture
def fleet(api: httpx.Client) -> Fleet:
    return Fleet.create(api)


def page(api: httpx.Client, path: str, **params: Any) -> dict[str, Any]:
    response = api.get(path, params=params)
    assert response.status_code == 200, response.text
    return dict(response.json())


def ids(answer: dict[str, Any]) -> list[int]:
    return [item["id"] for item in answer["items"]]


class TestPaging:
    def test_pages_are_consistent_and_say_their_total(self, api: httpx.Client, fleet: Fleet) -> None:
        created = [fleet.device()["id"] for _ in range(7)]
        first = page(api, "/devices", product_id=fleet.product_id, limit=3)
        assert (first["total"], first["limit"], first["offset"]) == (7, 3, 0)
        seen = ids(first)
        for offset in (3, 6):
            seen += ids(page(api, "/devices", product_id=fleet.product_id, limit=3, offset=offset))
        assert seen == sorted(created)
        beyond = page(api, "/devices", product_id=fleet.product_id, offset=50)
        assert (beyond["items"], beyond["total"]) == ([], 7)

    def test_defaults_and_bounds(self, api: httpx.Client, fleet: Fleet) -> None:
        everything = page(api, "/products")
        assert (everything["limit"], everything["offset"]) == (100, 0)
        assert page(api, "/products", limit=1000)["limit"] == 1000
        for bad in ({"limit": 0}, {"limit": 1001}, {"offset": -1}, {"limit": "ten"}):
            refused = api.get("/products", params=bad)
            assert refused.status_code == 422, bad
            assert refused.json()["error"]["field"] == next(iter(bad))

    @pytest.mark.parametrize(
        "path",
        ["/products", "/devices", "/packages", "/campaigns", "/audit"],
    )
    def test_every_list_answers_a_page(self, api: httpx.Client, path: str) -> None:
        answer = page(api, path, limit=1)
        assert set(answer) == {"items", "total", "limit", "offset"}
        assert len(answer["items"]) <= 1

    def test_campaign_devices_page_and_filter(self, server: Server, api: httpx.Client, fleet: Fleet) -> None:
        sims = [SimDevice.token(server, fleet.device()).connect() for _ in range(2)]
        wait_until(lambda: page(api, "/devices", product_id=fleet.product_id, online="true")["total"] == 2)
        offline = [fleet.device()["id"] for _ in range(3)]
        cid = fleet.campaign(fleet.package(firmware(200, seed=90), "1.0.0")["id"])["id"]
        path = f"/campaigns/{cid}/devices"
        assert page(api, path)["total"] == 5
        failed = page(api, path, state="failed", failure_reason="offline")
        assert sorted(item["device_id"] for item in failed["items"]) == offline
        assert page(api, path, state="notified")["total"] == 2
        assert page(api, path, failure_reason="timeout")["total"] == 0
        two = page(api, path, limit=2, offset=1)
        assert (len(two["items"]), two["total"]) == (2, 5)
        assert api.get(path, params={"state": "lost"}).status_code == 422
        for sim in sims:
            sim.disconnect()


class TestDeviceFilters:
    def test_search_online_enabled_tags_and_versions(self, server: Server, api: httpx.Client, fleet: Fleet) -> None:
        fleet.module("MCU")
        mcu = next(m for m in api.get(f"/products/{fleet.product_id}").json()["modules"] if m["name"] == "MCU")
        assert api.patch(f"/modules/{mcu['id']}", json={"alias": "mcu"}).status_code == 200
        prefix = unique("pump")
        pump = fleet.device(f"{prefix}-1")
        pump_2 = fleet.device(f"{prefix.upper()}-2")
        valve = fleet.device(unique("valve"))
        api.patch(f"/devices/{pump['id']}", json={"tags": ["eu", "beta"]})
        api.patch(f"/devices/{valve['id']}", json={"tags": ["us"], "enabled": False})
        api.patch(f"/devices/{pump_2['id']}", json={"tags": ["asia"]})
        sim = SimDevice.token(server, pump).connect()
        sim.inform("v2.0", module="mcu")  # the module by its alias
        sim.inform("1.0.0")
        wait_until(lambda: len(api.get(f"/devices/{pump['id']}").json()["versions"]) == 2)

        def found(**params: Any) -> list[int]:
            return ids(page(api, "/devices", product_id=fleet.product_id, **params))

        assert found(q=prefix) == [pump["id"], pump_2["id"]]  # a prefix, in any case
        assert found(q="%") == []  # a prefix, not a pattern
        assert found(online="true") == [pump["id"]]
        assert found(online="false", enabled="true") == [pump_2["id"]]
        assert found(enabled="false") == [valve["id"]]
        assert found(tag=["us", "beta"]) == [pump["id"], valve["id"]]
        assert found(module="MCU") == [pump["id"]]
        assert found(module="mcu", version="2.0.0") == [pump["id"]]  # alias, and v2.0 is 2.0.0
        assert found(module="mcu", version="2.1") == []
        assert found(version="1.0") == [pump["id"]]  # the default module
        assert api.get("/devices", params={"product_id": fleet.product_id, "module": "GPS"}).status_code == 422
        sim.disconnect()


class TestOtherFilters:
    def test_packages_and_campaigns(self, server: Server, api: httpx.Client, fleet: Fleet) -> None:
        fleet.module("MCU")
        device = fleet.device()
        full = fleet.package(firmware(100, seed=91), "1.0.0")
        mcu = fleet.package(firmware(100, seed=92), "2.0.0", module="MCU")
        diff = fleet.package(firmware(100, seed=93), "1.1.0", type="diff", source_version="1.0.0")
        api.patch(f"/packages/{diff['id']}", json={"enabled": False})
        product = {"product_id": fleet.product_id}
        assert ids(page(api, "/packages", **product)) == [full["id"], mcu["id"], diff["id"]]
        assert ids(page(api, "/packages", **product, module="MCU")) == [mcu["id"]]
        assert ids(page(api, "/packages", **product, module="main")) == [full["id"], diff["id"]]
        assert ids(page(api, "/packages", **product, enabled="false")) == [diff["id"]]
        assert ids(page(api, "/packages", **product, type="full", version="v1.0")) == [full["id"]]

        done = fleet.campaign(full["id"], device_ids=[device["id"]])["id"]  # fails at once: offline
        wait_until(lambda: api.get(f"/campaigns/{done}").json()["state"] == "finished")
        running = fleet.campaign(mcu["id"], device_ids=[device["id"]], push=False)["id"]
        assert ids(page(api, "/campaigns", **product)) == [done, running]
        assert ids(page(api, "/campaigns", **product, state="running")) == [running]
        assert ids(page(api, "/campaigns", package_id=full["id"])) == [done]
        assert api.get("/campaigns", params={"state": "sleeping"}).status_code == 422


class TestStrictness:
    @pytest.mark.parametrize(
        ("path", "params", "named"),
        [
            ("/devices", {"name": "x"}, "name"),
            ("/devices", {"stat": "online", "limit": "5"}, "stat"),
            ("/campaigns", {"state": "running", "product": "1"}, "product"),
            ("/packages", {"product": "1"}, "product"),
            ("/products", {"q": "x"}, "q"),
            ("/audit", {"after_id": "3"}, "after_id"),
        ],
    )
    def test_an_unknown_query_parameter_is_refused_by_name(
        self, api: httpx.Client, path: str, params: dict[str, str], named: str
    ) -> None:
        refused = api.get(path, params=params)
        assert refused.status_code == 422
        error = refused.json()["error"]
        assert error["field"] == named
        assert named in error["message"]

    def test_unknown_body_fields_are_refused_on_create_and_on_patch(self, api: httpx.Client, fleet: Fleet) -> None:
        created = api.post("/products", json={"name": unique("p"), "colour": "red", "size": 3})
        assert created.status_code == 422
        assert created.json()["error"]["message"] == "unknown fields: colour, size"
        device = api.post("/devices", json={"product_id": fleet.product_id, "name": unique("d"), "label": "x"})
        assert (device.status_code, device.json()["error"]["field"]) == (422, "label")
        made = fleet.device()
        patched = api.patch(f"/devices/{made['id']}", json={"label": "x"})
        assert (patched.status_code, patched.json()["error"]["field"]) == (422, "label")
        settings = api.put("/settings", json={"max_file_size_mb": 10, "max_files": 2})
        assert (settings.status_code, settings.json()["error"]["field"]) == (422, "max_files")
        upload = fleet.upload(firmware(100, seed=94), "1.0.0", colour="red")
        assert upload.status_code == 422
        assert upload.json()["error"]["field"] == "colour"

    @pytest.mark.parametrize("loose", ["no", "false ", 0, 1, "0", "off", None])
    def test_booleans_are_true_or_false(self, api: httpx.Client, fleet: Fleet, loose: object) -> None:
        device = fleet.device()
        refused = api.patch(f"/devices/{device['id']}", json={"enabled": loose if loose is not None else "yes"})
        assert refused.status_code == 422
        assert refused.json()["error"]["field"] == "enabled"
        assert api.get(f"/devices/{device['id']}").json()["enabled"] is True

    def test_boolean_query_parameters_and_form_fields_too(self, api: httpx.Client, fleet: Fleet) -> None:
        assert api.get("/devices", params={"online": "yes"}).status_code == 422
        assert api.get("/devices", params={"online": "1"}).status_code == 422
        assert api.get("/devices", params={"online": "false"}).status_code == 200
        upload = fleet.upload(firmware(100, seed=95), "1.0.0", verify_required="yes")
        assert (upload.status_code, upload.json()["error"]["field"]) == (422, "verify_required")
