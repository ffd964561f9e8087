"""An operator's day in the console, in Chinese: a product, a module, a device, a package, a verify campaign
on a simulated device watched to 100 % without a reload; a failed device retried; a staged group approved."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from console_kit import Console, field_error, make_user
from skylift_testkit import Fleet, Server, SimDevice, firmware, unique

DEVICE_TIMEOUT = "180"


@pytest.fixture
def operator_api(server: Server) -> Iterator[httpx.Client]:
    """The API as an operator (a user's own token), for what a test sets up around the page it drives."""
    name = make_user(server, "operator")
    with server.api() as admin:
        user = next(u for u in admin.get("/users", params={"limit": 1000}).json()["items"] if u["name"] == name)
        token = admin.post(f"/users/{user['id']}/tokens", json={"name": "setup"}).json()["token"]
    with server.api(token) as api:
        yield api


def play_device(server: Server, token: str, *options: str) -> subprocess.Popen[bytes]:
    """The project's own device player, as README's quick start runs it."""
    command = [sys.executable, "-m", "skylift.cli", "device", "--token", token, "--port", str(server.mqtt_port)]
    return subprocess.Popen(
        [*command, "--version", "1.0.0", "--timeout", DEVICE_TIMEOUT, *options],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env={**os.environ, "NO_COLOR": "1"},
    )


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        process.wait(timeout=30)


def no_reload_marker(console: Console) -> None:
    # A value that lives only as long as this document: a reload (or any navigation) loses it.
    console.page.evaluate("window.__stillTheSamePage = true")


def same_page(console: Console) -> bool:
    return bool(console.page.evaluate("window.__stillTheSamePage === true"))


class TestAnOperatorInChinese:
    def test_from_a_new_product_to_a_verified_package(self, open_console: Any, server: Server, tmp_path: Path) -> None:
        console: Console = open_console()
        console.accept_dialogs()
        console.sign_in(make_user(server, "operator"))
        console.switch_to("zh")
        page = console.page

        product = unique("温控器")
        console.open("/products")
        page.fill("#new-product #f-name", product)
        page.select_option("#new-product #f-notice_style", "sagoo")
        page.click("#new-product button[type=submit]")
        page.wait_for_selector(f"h1:has-text('{product}')")
        assert page.inner_text(".notice") == "已创建。"
        product_id = int(page.url.rsplit("/", 1)[1])
        console.shot("product")

        page.click("text=管理模块")
        page.wait_for_selector("#new-module")
        page.select_option("#new-module #f-product_id", str(product_id))
        page.fill("#new-module #f-name", "MCU")
        page.fill("#new-module #f-alias", "mcu")
        page.fill("#new-module #f-description", "主控芯片")
        page.click("#new-module button[type=submit]")
        page.wait_for_selector("td:has-text('mcu_version')")
        console.shot("modules")

        device_name = unique("dev")
        console.open(f"/devices?product_id={product_id}")
        page.select_option("#new-device #f-product_id", str(product_id))
        page.fill("#new-device #f-name", device_name)
        page.fill("#new-device #f-tags", "beta eu")
        page.click("#new-device button[type=submit]")
        token = page.inner_text("#access-token")
        console.shot("device-created")
        player = play_device(server, token, "--once")
        try:
            image = tmp_path / "固件-1.1.0.bin"
            image.write_bytes(firmware(300_000, seed=1212))
            console.open(f"/packages?product_id={product_id}")
            page.fill("#new-package #f-name", "温控器固件 1.1")
            page.select_option("#new-package #f-product_id", str(product_id))
            page.fill("#new-package #f-version", "1.1.0")
            page.select_option("#new-package #f-sign_method", "SHA256")
            page.check("#new-package input[name=verify_required]")
            page.set_input_files("#new-package #f-file", str(image))
            page.click("#new-package button[type=submit]")
            page.wait_for_selector("h1:has-text('温控器固件 1.1')")
            assert page.inner_text(".notice") == "升级包已上传。"
            assert "未验证" in page.inner_text("dl.facts")
            console.shot("package-unverified")

            page.click("text=新建升级任务")
            page.wait_for_selector("form[action$='/campaigns']")
            assert page.input_value("#f-type") == "verify"
            page.fill("#f-name", "验证 1.1")
            page.fill("#f-device_ids", device_name)
            page.select_option("#f-offline", "deliver_on_connect")
            console.shot("campaign-new")
            page.click("form[action$='/campaigns'] button[type=submit]")
            page.wait_for_selector("#live")
            no_reload_marker(console)
            # The page follows the device live: no reload, until every device finished and succeeded.
            page.wait_for_selector("#finished-count:has-text('1 台中 1 台已结束')", timeout=120_000)
            page.wait_for_selector("#success-count:has-text('1 台中 1 台成功')")
            assert same_page(console)
            assert page.get_attribute("#live", "data-state") == "finished"
            assert page.query_selector("#live[data-live]") is None  # nothing left to follow
            assert "100 %" in page.inner_text("#attempts tbody tr")
            titles = page.eval_on_selector_all("svg.chart title", "nodes => nodes.map(n => n.textContent)")
            assert "成功率: 100 %" in titles
            assert any(title.startswith("每分钟完成的设备") for title in titles)
            console.shot("campaign-finished")
            assert player.wait(timeout=60) == 0
        finally:
            stop(player)

        console.open(f"/products/{product_id}")
        assert "1.1.0" in page.inner_text(".card.wide")  # the version distribution, with the new version
        page.click("text=升级包")
        page.click("text=温控器固件 1.1")
        assert "已验证" in page.inner_text("dl.facts")
        console.shot("package-verified")


class TestLiveActions:
    def test_a_failed_device_is_retried_from_its_row(
        self, open_console: Any, server: Server, operator_api: httpx.Client
    ) -> None:
        fleet = Fleet.create(operator_api)
        device = fleet.device()
        package = fleet.package(firmware(50_000, seed=1213), "2.0.0")
        player = play_device(server, device["access_token"], "--fail", "-3")
        try:
            campaign = fleet.campaign(package["id"], device_ids=[device["id"]], offline="deliver_on_connect")
            console: Console = open_console()
            console.sign_in(make_user(server, "operator"))
            console.open(f"/campaigns/{campaign['id']}")
            no_reload_marker(console)
            row = f"#attempts tr[data-device='{device['id']}']"
            console.page.wait_for_selector(f"{row}[data-state=failed]", timeout=120_000)
            assert "verification failed" in console.page.inner_text(row)
            console.shot("campaign-failed-device")
            assert same_page(console)
            console.page.click(f"{row} button:has-text('Retry')")
            console.page.wait_for_selector(".notice:has-text('The notice is sent again.')")
            console.page.wait_for_selector(f"{row}[data-state=succeeded]", timeout=120_000)
            assert fleet.attempts(campaign["id"])[device["id"]]["attempts"] == 2
        finally:
            stop(player)

    def test_a_staged_group_is_approved(self, open_console: Any, server: Server, operator_api: httpx.Client) -> None:
        fleet = Fleet.create(operator_api)
        sims = []
        for _ in range(2):
            sim = SimDevice.token(server, fleet.device())
            sim.auto_step = 100
            sims.append(sim.connect())
        try:
            package = fleet.package(firmware(20_000, seed=1214), "3.0.0")
            ids = [sim.device_id for sim in sims]
            campaign = fleet.campaign(package["id"], device_ids=ids, groups=[50, 100], approval_required=True)
            console: Console = open_console()
            console.sign_in(make_user(server, "operator"))
            console.open(f"/campaigns/{campaign['id']}")
            console.page.wait_for_selector(
                "#why:has-text('waiting for approval to start group 2 of 2')", timeout=60_000
            )
            console.page.reload()  # the actions follow the state: Approve appears once it is waiting
            console.shot("campaign-waiting-for-approval")
            console.page.click("button:has-text('Approve the next group')")
            console.page.wait_for_selector(".notice:has-text('The next group is approved.')")
            no_reload_marker(console)
            console.page.wait_for_selector("#finished-count:has-text('2 of 2 finished')", timeout=60_000)
            assert same_page(console)
            assert "2 of 2 succeeded" in console.page.inner_text("#success-count")
        finally:
            for sim in sims:
                sim.disconnect()


class TestFormErrors:
    def test_the_servers_errors_show_beside_their_fields(
        self, open_console: Any, server: Server, operator_api: httpx.Client
    ) -> None:
        fleet = Fleet.create(operator_api)
        package = fleet.package(firmware(1000, seed=1215), "1.0.1")
        console: Console = open_console()
        console.sign_in(make_user(server, "operator"))
        console.open(f"/campaigns/new?package_id={package['id']}&type=verify")
        page = console.page
        page.fill("#f-name", "half a rollout")
        page.fill("#f-groups", "10, 50")
        page.fill("#f-schedule-window-tz", "Mars/Olympus")
        page.fill("#f-schedule-window-start", "02:00")
        page.fill("#f-schedule-window-end", "05:00")
        page.click("form[action$='/campaigns'] button[type=submit]")
        assert field_error(page, "groups") == (
            "the last group must be 100 (use target.percent to reach only part of the fleet)"
        )
        assert field_error(page, "schedule.window.tz") == "'Mars/Olympus' is not a time zone"
        assert page.input_value("#f-name") == "half a rollout"  # what was typed stays
        console.shot("campaign-form-errors")
        page.fill("#f-groups", "")
        page.fill("#f-schedule-window-tz", "")
        page.click("form[action$='/campaigns'] button[type=submit]")
        assert field_error(page, "device_ids") == "a verify campaign names its devices"
        # A NUL character (PostgreSQL's text cannot hold one) is refused beside its field, as the API does.
        nul = console.post("/campaigns", {"name": "half\x00a rollout", "package_id": str(package["id"])})
        assert nul.status_code == 422
        assert "name must not contain a NUL character" in nul.text
        assert not any(c["name"].startswith("half") for c in operator_api.get("/campaigns").json()["items"])
        console.switch_to("zh")
        console.open(f"/campaigns/new?package_id={package['id']}&type=verify")
        page.fill("#f-name", "验证")
        page.fill("#f-device_ids", "no-such-device")
        page.click("form[action$='/campaigns'] button[type=submit]")
        assert field_error(page, "device_ids") == "升级包所属产品中没有名为 no-such-device 的设备"
        console.shot("campaign-form-errors")

    def test_an_upload_error_shows_beside_the_field(
        self, open_console: Any, server: Server, operator_api: httpx.Client, tmp_path: Path
    ) -> None:
        fleet = Fleet.create(operator_api)
        fleet.package(firmware(1000, seed=1216), "1.0.0")
        console: Console = open_console()
        console.sign_in(make_user(server, "operator"))
        console.open(f"/packages?product_id={fleet.product_id}")
        page = console.page
        image = tmp_path / "fw.bin"
        image.write_bytes(firmware(1000, seed=1217))
        page.fill("#new-package #f-name", "again")
        page.select_option("#new-package #f-product_id", str(fleet.product_id))
        page.fill("#new-package #f-version", "v1.0")  # the same version as 1.0.0
        page.set_input_files("#new-package #f-file", str(image))
        page.click("#new-package button[type=submit]")
        page.wait_for_selector('[data-field="version"] .error')
        assert "already exists" in field_error(page, "version")
        page.fill("#new-package #f-version", "not a version")
        page.click("#new-package button[type=submit]")
        page.wait_for_selector('[data-field="version"] .error:has-text("is not a version")')
        console.shot("package-upload-error")


class TestBulkImport:
    def test_every_wrong_row_is_listed_then_all_are_created(
        self, open_console: Any, server: Server, operator_api: httpx.Client
    ) -> None:
        fleet = Fleet.create(operator_api)
        taken = fleet.device()
        console: Console = open_console()
        console.sign_in(make_user(server, "operator"))
        console.open("/devices/import")
        page = console.page
        page.select_option("#f-product_id", str(fleet.product_id))
        page.fill(
            "#f-csv",
            f"name,tags,gateway,address\ngw-1,site-a,,\n{taken['name']},,,\nbad name,,,\nsensor-1,beta,gw-9,S1\n",
        )
        page.click("form[action$='/devices/import'] button[type=submit]")
        rows = page.eval_on_selector_all(
            "#import-errors tbody tr", "rows => rows.map(r => [...r.cells].map(c => c.innerText))"
        )
        assert [row[:2] for row in rows] == [["2", "name"], ["3", "name"], ["4", "gateway"]]
        assert page.input_value("#f-csv").startswith("name,tags,gateway,address")  # to correct, not to retype
        console.shot("device-import-errors")
        assert operator_api.get("/devices", params={"product_id": fleet.product_id}).json()["total"] == 1
        page.fill("#f-csv", "name,tags,gateway,address\ngw-1,site-a,,\nsensor-1,beta,gw-1,S1\n")
        page.click("form[action$='/devices/import'] button[type=submit]")
        page.wait_for_selector("#imported")
        assert len(page.query_selector_all("#imported tbody tr")) == 2
        assert operator_api.get("/devices", params={"product_id": fleet.product_id}).json()["total"] == 3
