"""A token device (seed 002) and a product-key device (seed 004) from version report to succeeded."""

from __future__ import annotations

import hashlib

import httpx
import pytest

from skylift_testkit import Fleet, Server, SimDevice, firmware, md5, wait_until


def download_in_two_ranges(url: str, size: int) -> bytes:
    """Resume as a device does after a dropped connection: first part, then the rest by Range."""
    split = size // 3
    first = httpx.get(url, headers={"Range": f"bytes=0-{split - 1}"})
    assert first.status_code == 206
    assert first.headers["content-range"] == f"bytes 0-{split - 1}/{size}"
    rest = httpx.get(url, headers={"Range": f"bytes={split}-", "If-Range": first.headers["etag"]})
    assert rest.status_code == 206
    return first.content + rest.content


class TestTokenDevice:
    def test_from_version_report_to_succeeded(self, server: Server, api: httpx.Client) -> None:
        fleet = Fleet.create(api)
        device = fleet.device()
        sim = SimDevice.token(server, device).connect()
        sim.inform("v1.0.1", module="default")
        wait_until(lambda: api.get(f"/devices/{device['id']}").json()["versions"] == {"default": "v1.0.1"})
        assert api.get(f"/devices/{device['id']}").json()["online"] is True

        image = firmware(300_000, seed=1)
        package = fleet.package(image, "v1.1", sign_method="MD5")
        assert package["files"][0]["md5"] == md5(image)
        assert package["files"][0]["sha256"] == hashlib.sha256(image).hexdigest()
        campaign = fleet.campaign(package["id"], ext_data={"key1": "value1"})

        notice = sim.notice()
        assert set(notice) == {"id", "code", "params"}
        assert notice["code"] == 200
        assert isinstance(notice["id"], str)
        assert len(notice["id"]) == 10
        params = notice["params"]
        assert "module" not in params  # the default module is never named (seed 002)
        assert params["version"] == "v1.1"
        assert params["size"] == len(image)
        assert params["signMethod"] == "Md5"
        assert params["sign"] == md5(image)
        assert params["extData"] == {"key1": "value1"}
        assert fleet.attempts(campaign["id"])[device["id"]]["state"] == "notified"

        sim.progress_002(30, "downloading")
        fleet.wait_state(campaign["id"], device["id"], "downloading")
        assert download_in_two_ranges(params["url"], len(image)) == image
        # The server saw the last byte go out: the device is now flashing.
        fleet.wait_state(campaign["id"], device["id"], "upgrading")

        whole = httpx.get(params["url"])
        assert whole.status_code == 200
        assert whole.content == image
        assert whole.headers["etag"] == f'"{hashlib.sha256(image).hexdigest()}"'
        assert int(whole.headers["content-length"]) == len(image)

        sim.progress_002(100, "升级进度100%")
        attempt = fleet.wait_state(campaign["id"], device["id"], "succeeded")
        assert attempt["progress"] == 100
        assert attempt["step_desc"] == "升级进度100%"
        sim.inform("v1.1")

        result = api.get(f"/campaigns/{campaign['id']}").json()
        assert result["state"] == "finished"
        assert result["counts"] == {"succeeded": 1}
        assert result["success_rate"] == 1.0
        wait_until(lambda: api.get(f"/products/{fleet.product_id}/versions").json()["versions"] == {"v1.1": 1})
        sim.disconnect()

    def test_progress_with_module_moves_that_modules_attempt(self, server: Server, api: httpx.Client) -> None:
        fleet = Fleet.create(api)
        fleet.module("MCU")
        device = fleet.device()
        sim = SimDevice.token(server, device).connect()
        package = fleet.package(firmware(5000, seed=2), "2.0.0", module="MCU", sign_method="SHA256")
        campaign = fleet.campaign(package["id"])

        params = sim.notice()["params"]
        assert params["module"] == "MCU"
        assert params["signMethod"] == "SHA256"
        assert params["sign"] == package["files"][0]["sha256"]
        sim.progress_002(100, "done", module="MCU")
        fleet.wait_state(campaign["id"], device["id"], "succeeded")
        sim.disconnect()


class TestProductKeyDevice:
    def test_succeeds_when_it_reports_the_target_version(self, server: Server, api: httpx.Client) -> None:
        fleet = Fleet.create(api)
        device = fleet.device()
        sim = SimDevice.product_key(server, device).connect()
        sim.publish(f"/ota/device/inform/{sim.topic_id}", {"id": 1, "params": {"version": "1.0.0"}})
        wait_until(lambda: api.get(f"/devices/{device['id']}").json()["versions"] == {"default": "1.0.0"})
        image = firmware(432_945, seed=3)
        package = fleet.package(image, "2.0.0")
        campaign = fleet.campaign(package["id"])

        notice = sim.notice()
        assert notice["code"] == "1000"
        assert notice["message"] == "success"
        assert isinstance(notice["id"], int)
        data = notice["data"]
        assert data["size"] == len(image)
        assert data["version"] == "2.0.0"
        assert data["md5"] == md5(image)
        # Alibaba's SDK drops a notice without sign/signMethod and compares the method case-sensitively.
        assert data["sign"] == md5(image)
        assert data["signMethod"] == "Md5"
        assert "module" not in data

        sim.progress_004(1, "start")
        fleet.wait_state(campaign["id"], device["id"], "downloading")
        assert download_in_two_ranges(data["url"], len(image)) == image
        fleet.wait_state(campaign["id"], device["id"], "upgrading")
        sim.progress_004(80, "flashing")
        sim.inform("2.0.0")
        attempt = fleet.wait_state(campaign["id"], device["id"], "succeeded")
        assert attempt["progress"] == 100
        sim.disconnect()

    # Step 100 is progress for a product-key device: what it says next decides. Alibaba's C SDK 3.x
    # reports 100 when the last byte arrives, then -3 when the MD5 does not match.
    @pytest.mark.parametrize(
        ("seed", "after", "state", "reason"),
        [
            (4, ("inform", "1.9.0"), "failed", "version mismatch"),
            (41, ("progress", "-3"), "failed", "verification failed"),
            (42, ("inform", "2.0.{seed}"), "succeeded", None),
        ],
        ids=["another-version", "digest-check-fails", "target-version"],
    )
    def test_what_follows_step_100_decides(
        self, server: Server, api: httpx.Client, seed: int, after: tuple[str, str], state: str, reason: str | None
    ) -> None:
        fleet = Fleet.create(api)
        device = fleet.device()
        sim = SimDevice.product_key(server, device).connect()
        version = f"2.0.{seed}"
        campaign = fleet.campaign(fleet.package(firmware(1000, seed=seed), version)["id"])
        sim.notice()
        sim.progress_004(100, "")
        attempt = fleet.wait_state(campaign["id"], device["id"], "upgrading")
        assert attempt["progress"] == 100
        kind, value = after
        if kind == "inform":
            sim.inform(value.format(seed=seed))
        else:
            sim.progress_004(int(value), "md5 mismatch")
        attempt = fleet.wait_state(campaign["id"], device["id"], state)
        assert attempt["failure_reason"] == reason
        sim.disconnect()

    def test_a_reboot_before_the_download_gets_the_notice_again(self, server: Server, api: httpx.Client) -> None:
        # Alibaba's SDKs report their version at every boot; a reboot is not a failure.
        fleet = Fleet.create(api)
        device = fleet.device()
        sim = SimDevice.product_key(server, device).connect()
        sim.inform("1.0.0")
        campaign = fleet.campaign(fleet.package(firmware(1000, seed=43), "2.0.3")["id"])
        first = sim.notice()
        sim.progress_004(10, "downloading")
        fleet.wait_state(campaign["id"], device["id"], "downloading")
        sim.disconnect()

        rebooted = SimDevice.product_key(server, device).connect()
        rebooted.inform("1.0.0")
        again = rebooted.notice()
        assert again["data"]["version"] == first["data"]["version"] == "2.0.3"
        # The notice can arrive before the boot report is applied (a loaded machine): wait for it.
        attempt = fleet.wait_state(campaign["id"], device["id"], "notified")
        assert attempt["failure_reason"] is None
        assert attempt["attempts"] == 1
        rebooted.progress_004(100, "")
        rebooted.inform("2.0.3")
        fleet.wait_state(campaign["id"], device["id"], "succeeded")
        rebooted.disconnect()

    def test_a_boot_report_applied_after_the_notice_does_not_fail(self, server: Server, api: httpx.Client) -> None:
        # The boot report reaches the server after the notice went out: the device is not failed.
        fleet = Fleet.create(api)
        device = fleet.device()
        sim = SimDevice.product_key(server, device).connect()
        campaign = fleet.campaign(fleet.package(firmware(1000, seed=44), "2.0.4")["id"])
        sim.notice()
        sim.inform("1.0.0")
        sim.notice()  # delivered again, since it may have been sent before the device was listening
        attempt = fleet.attempts(campaign["id"])[device["id"]]
        assert (attempt["state"], attempt["failure_reason"]) == ("notified", None)
        sim.progress_004(100, "")
        sim.inform("2.0.4")
        fleet.wait_state(campaign["id"], device["id"], "succeeded")
        sim.disconnect()

    def test_sagoo_products_get_code_200_and_upper_case_md5(self, server: Server, api: httpx.Client) -> None:
        fleet = Fleet.create(api, notice_style="sagoo")
        device = fleet.device()
        sim = SimDevice.product_key(server, device).connect()
        fleet.campaign(fleet.package(firmware(1000, seed=5), "1.0.1")["id"], ext_data={"note": "x"})
        notice = sim.notice()
        assert notice["code"] == "200"
        assert notice["data"]["signMethod"] == "MD5"
        assert notice["data"]["extData"] == {"note": "x"}
        sim.disconnect()


class TestFailureAndRetry:
    def test_download_failure_then_retry_succeeds(self, server: Server, api: httpx.Client) -> None:
        fleet = Fleet.create(api)
        device = fleet.device()
        sim = SimDevice.token(server, device).connect()
        campaign = fleet.campaign(fleet.package(firmware(2000, seed=6), "1.2.0")["id"])
        first = sim.notice()
        sim.progress_002(-2, "http 500")
        attempt = fleet.wait_state(campaign["id"], device["id"], "failed")
        assert attempt["failure_reason"] == "download failed"
        assert attempt["step_desc"] == "http 500"
        result = api.get(f"/campaigns/{campaign['id']}").json()
        assert result["failure_reasons"] == {"download failed": 1}
        assert result["state"] == "finished"

        retried = api.post(f"/campaigns/{campaign['id']}/retry")
        assert retried.status_code == 200, retried.text
        assert retried.json()["state"] == "running"
        second = sim.notice()
        assert second["id"] != first["id"]
        assert second["params"]["url"] != first["params"]["url"]
        assert httpx.get(second["params"]["url"]).content == firmware(2000, seed=6)
        sim.progress_002(100)
        attempt = fleet.wait_state(campaign["id"], device["id"], "succeeded")
        assert attempt["attempts"] == 2
        assert attempt["failure_reason"] is None
        sim.disconnect()

    def test_offline_device_fails_as_offline_and_retry_reaches_it(self, server: Server, api: httpx.Client) -> None:
        fleet = Fleet.create(api)
        device = fleet.device()
        campaign = fleet.campaign(fleet.package(firmware(1000, seed=7), "1.0.1")["id"])
        attempt = fleet.attempts(campaign["id"])[device["id"]]
        assert attempt["state"] == "failed"
        assert attempt["failure_reason"] == "offline"

        sim = SimDevice.token(server, device).connect()
        wait_until(lambda: api.get(f"/devices/{device['id']}").json()["online"])
        api.post(f"/campaigns/{campaign['id']}/retry", json={"device_ids": [device["id"]]})
        assert sim.notice()["params"]["version"] == "1.0.1"
        sim.disconnect()
        wait_until(lambda: not api.get(f"/devices/{device['id']}").json()["online"], what="device offline")

    def test_cancel_one_device_then_the_campaign(self, server: Server, api: httpx.Client) -> None:
        fleet = Fleet.create(api)
        first, second = fleet.device(), fleet.device()
        sims = [SimDevice.token(server, d).connect() for d in (first, second)]
        campaign = fleet.campaign(fleet.package(firmware(1000, seed=8), "3.0.0")["id"])
        canceled = api.post(f"/campaigns/{campaign['id']}/cancel", json={"device_ids": [first["id"]]})
        assert canceled.status_code == 200
        assert fleet.attempts(campaign["id"])[first["id"]]["state"] == "canceled"
        assert canceled.json()["state"] == "running"
        sims[0].progress_002(100)
        whole = api.post(f"/campaigns/{campaign['id']}/cancel").json()
        assert whole["state"] == "canceled"
        assert whole["counts"] == {"canceled": 2}
        for sim in sims:
            sim.disconnect()


class TestMessageOrder:
    def test_step_100_then_an_old_version_report_is_seen_in_that_order(self, server: Server, api: httpx.Client) -> None:
        """Sent back to back, the version report must not overtake step 100 (it would be a mismatch)."""
        fleet = Fleet.create(api)
        devices = [fleet.device() for _ in range(5)]
        sims = [SimDevice.token(server, d).connect() for d in devices]
        campaign = fleet.campaign(fleet.package(firmware(1000, seed=9), "4.0.0")["id"])
        for sim in sims:
            sim.notice()
        for sim in sims:
            sim.client.publish(f"/ota/device/progress/{sim.topic_id}", b'{"step": "100", "desc": "ok"}', qos=1)
            sim.client.publish(
                f"/ota/device/inform/{sim.topic_id}", b'{"id": "1", "params": {"version": "3.9"}}', qos=1
            )
        for device in devices:
            fleet.wait_state(campaign["id"], device["id"], "succeeded")
        for sim in sims:
            sim.disconnect()
