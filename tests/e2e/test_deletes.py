"""Deleting: a device is decommissioned (history kept), a package goes with its files, and nothing that is
still in use can be deleted. Every delete is in the audit log."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from skylift_testkit import Fleet, Server, SimDevice, firmware, wait_until


@pytest.fixture
def fleet(api: httpx.Client) -> Fleet:
    return Fleet.create(api)


def stored(server: Server, content: bytes) -> bool:
    """Whether a package file with exactly these bytes is in the server's storage."""
    files = server.data_dir / "files"
    return any(path.is_file() and path.read_bytes() == content for path in files.iterdir())


def audited(api: httpx.Client, target_type: str, target_id: int) -> list[str]:
    events = api.get("/audit", params={"target_type": target_type, "target_id": target_id}).json()["items"]
    return [event["action"] for event in events]


def url_of(api: httpx.Client, package: dict[str, Any]) -> str:
    file_id = package["files"][0]["id"]
    return str(api.post(f"/packages/{package['id']}/files/{file_id}/url", json={}).json()["url"])


class TestDeviceDecommissioning:
    def test_refused_at_once_history_kept_and_out_of_lists(
        self, server: Server, api: httpx.Client, fleet: Fleet
    ) -> None:
        device = fleet.device()
        sim = SimDevice.token(server, device).connect()
        wait_until(lambda: api.get(f"/devices/{device['id']}").json()["online"], what="the device to be online")
        package = fleet.package(firmware(200, seed=100), "1.0.0")
        cid = fleet.campaign(package["id"])["id"]
        sim.notice()

        assert api.delete(f"/devices/{device['id']}").status_code == 204
        wait_until(lambda: not sim.connected, what="the live connection to be closed")
        sim.client.loop_stop()
        again = SimDevice.token(server, device)
        assert again.try_connect().is_failure
        again.client.loop_stop()

        shown = api.get(f"/devices/{device['id']}").json()
        assert shown["deleted_at"] is not None
        assert (shown["enabled"], shown["online"]) == (False, False)
        attempt = fleet.attempts(cid)[device["id"]]
        assert (attempt["state"], attempt["step_desc"]) == ("canceled", "device deleted")
        wait_until(lambda: api.get(f"/campaigns/{cid}").json()["state"] == "finished")
        listed = api.get("/devices", params={"product_id": fleet.product_id}).json()
        assert listed["total"] == 0
        everything = api.get("/devices", params={"product_id": fleet.product_id, "include_deleted": "true"}).json()
        assert [d["id"] for d in everything["items"]] == [device["id"]]
        assert audited(api, "device", device["id"])[0] == "device.delete"

        # History, not a device: it changes no more, and its name is free for the unit that replaces it.
        assert api.patch(f"/devices/{device['id']}", json={"enabled": True}).status_code == 409
        assert api.post(f"/devices/{device['id']}/credentials").status_code == 409
        assert api.delete(f"/devices/{device['id']}").status_code == 409
        replacement = fleet.device(device["name"])
        assert replacement["id"] != device["id"]
        targeted = api.post("/campaigns", json={"name": "x", "package_id": package["id"], "device_ids": [device["id"]]})
        assert (targeted.status_code, targeted.json()["error"]["field"]) == (422, "device_ids")

    def test_a_gateway_goes_after_its_sub_devices(self, api: httpx.Client, fleet: Fleet) -> None:
        gateway = fleet.device()
        sub = api.post(
            "/devices",
            json={"product_id": fleet.product_id, "name": "sub", "gateway_id": gateway["id"], "address": "S1"},
        ).json()
        refused = api.delete(f"/devices/{gateway['id']}")
        assert refused.status_code == 409
        assert "sub-device" in refused.json()["error"]["message"]
        assert api.delete(f"/devices/{sub['id']}").status_code == 204
        assert api.delete(f"/devices/{gateway['id']}").status_code == 204

    def test_a_decommissioned_product_key_device_is_refused_too(self, server: Server, fleet: Fleet) -> None:
        device = fleet.device()
        assert fleet.api.delete(f"/devices/{device['id']}").status_code == 204
        sim = SimDevice.product_key(server, device)
        assert sim.try_connect().is_failure
        sim.client.loop_stop()


class TestPackageDeletion:
    def test_refused_while_an_open_campaign_uses_it_then_gone_with_its_files(
        self, server: Server, api: httpx.Client, fleet: Fleet
    ) -> None:
        device = fleet.device()
        content = firmware(5000, seed=101)
        package = fleet.package(content, "2.0.0")
        url = url_of(api, package)
        assert stored(server, content)
        cid = fleet.campaign(package["id"], device_ids=[device["id"]], push=False)["id"]

        refused = api.delete(f"/packages/{package['id']}")
        assert refused.status_code == 409
        assert f"campaign {cid}" in refused.json()["error"]["message"]
        assert stored(server, content)

        api.post(f"/campaigns/{cid}/cancel")
        assert api.delete(f"/packages/{package['id']}").status_code == 204
        wait_until(lambda: not stored(server, content), what="the file to be removed")
        assert httpx.get(url).status_code == 404
        assert api.get(f"/packages/{package['id']}").status_code == 404
        assert package["id"] not in [p["id"] for p in api.get("/packages").json()["items"]]
        # The closed campaign still tells what it rolled out.
        assert api.get(f"/campaigns/{cid}").json()["version"] == "2.0.0"
        assert audited(api, "package", package["id"])[0] == "package.delete"
        # The version may be uploaded again.
        assert fleet.package(content, "2.0.0")["id"] != package["id"]


class TestModuleCampaignAndProductDeletion:
    def test_a_module_without_packages(self, api: httpx.Client, fleet: Fleet) -> None:
        mcu = fleet.module("MCU")
        package = fleet.package(firmware(100, seed=102), "1.0.0", module="MCU")
        refused = api.delete(f"/modules/{mcu['id']}")
        assert refused.status_code == 409
        assert f"package {package['id']}" in refused.json()["error"]["message"]
        assert api.delete(f"/packages/{package['id']}").status_code == 204
        assert api.delete(f"/modules/{mcu['id']}").status_code == 204
        assert "MCU" not in [m["name"] for m in api.get(f"/products/{fleet.product_id}").json()["modules"]]
        default = fleet.product["modules"][0]
        assert api.delete(f"/modules/{default['id']}").status_code == 409
        assert audited(api, "module", mcu["id"])[0] == "module.delete"

    def test_a_finished_campaign(self, api: httpx.Client, fleet: Fleet) -> None:
        device = fleet.device()
        package = fleet.package(firmware(100, seed=103), "1.0.0")
        open_id = fleet.campaign(package["id"], device_ids=[device["id"]], push=False)["id"]
        assert api.delete(f"/campaigns/{open_id}").status_code == 409
        api.post(f"/campaigns/{open_id}/cancel")
        assert api.delete(f"/campaigns/{open_id}").status_code == 204
        assert api.get(f"/campaigns/{open_id}").status_code == 404
        assert audited(api, "campaign", open_id)[0] == "campaign.delete"

    def test_a_product_without_devices(self, server: Server, api: httpx.Client, fleet: Fleet) -> None:
        device = fleet.device()
        content = firmware(3000, seed=104)
        package = fleet.package(content, "1.0.0")
        cid = fleet.campaign(package["id"])["id"]  # the offline device fails: finished
        wait_until(lambda: api.get(f"/campaigns/{cid}").json()["state"] == "finished")
        refused = api.delete(f"/products/{fleet.product_id}")
        assert refused.status_code == 409
        assert "1 device" in refused.json()["error"]["message"]
        assert api.delete(f"/devices/{device['id']}").status_code == 204
        assert api.delete(f"/products/{fleet.product_id}").status_code == 204
        assert api.get(f"/products/{fleet.product_id}").status_code == 404
        assert api.get(f"/campaigns/{cid}").status_code == 404
        wait_until(lambda: not stored(server, content), what="the product's files to be removed")
        assert audited(api, "product", fleet.product_id)[0] == "product.delete"

    def test_unknown_ids(self, api: httpx.Client) -> None:
        for path in ("/devices", "/packages", "/modules", "/campaigns", "/products"):
            assert api.delete(f"{path}/999999999").status_code == 404, path
