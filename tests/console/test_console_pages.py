"""Every page in both languages (a screenshot of each), long lists in pages, a phone's width, and a viewer
who sees everything and can change nothing: no buttons, and the server refuses what they would do."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from console_kit import Console, make_user
from skylift_testkit import Fleet, Server, firmware, unique

DEVICES = 30  # more than a page holds


@dataclass
class World:
    product_id: int
    module_id: int
    device_id: int
    package_id: int
    campaign_id: int
    user_id: int

    def pages(self) -> dict[str, str]:
        """Every page of the console, by the name of its screenshot."""
        return {
            "overview": "/",
            "products": "/products",
            "product": f"/products/{self.product_id}",
            "modules": "/modules",
            "module": f"/modules/{self.module_id}",
            "devices": "/devices",
            "devices-page-2": "/devices?offset=25",
            "device": f"/devices/{self.device_id}",
            "device-import": "/devices/import",
            "packages": "/packages",
            "package": f"/packages/{self.package_id}",
            "campaigns": "/campaigns",
            "campaign-new": f"/campaigns/new?package_id={self.package_id}",
            "campaign": f"/campaigns/{self.campaign_id}",
            "settings": "/settings",
            "audit": "/audit",
            "users": "/users",
            "user": f"/users/{self.user_id}",
            "account": "/account",
        }


@pytest.fixture(scope="module")
def world(server: Server) -> Iterator[World]:
    with server.api() as api:
        fleet = Fleet.create(api, name=unique("thermostat"))
        module = fleet.module("MCU")
        devices = [fleet.device(f"t-{n:04d}-{unique('d')}") for n in range(DEVICES)]
        package = fleet.package(firmware(2000, seed=1220), "1.1.0", verify_required="true")
        campaign = fleet.campaign(package["id"], type="verify", device_ids=[devices[0]["id"]], push=False)
        user = api.post("/users", json={"name": unique("someone"), "role": "viewer", "password": "long password"})
        yield World(fleet.product_id, module["id"], devices[0]["id"], package["id"], campaign["id"], user.json()["id"])


def tour(console: Console, world: World, skip: tuple[str, ...] = ()) -> None:
    for name, path in world.pages().items():
        if name in skip:
            continue
        response = console.open(path)
        assert response is not None
        assert response.status == 200, (path, response.status)
        assert console.page.inner_text("h1")
        console.shot(name)


class TestEveryPage:
    def test_in_english_and_in_chinese(self, open_console: Any, server: Server, world: World) -> None:
        console: Console = open_console()
        console.sign_in(make_user(server, "admin"))
        tour(console, world)
        console.switch_to("zh")
        tour(console, world)
        assert console.page.inner_text("h1") == "我的账号"

    def test_long_lists_page(self, open_console: Any, server: Server, world: World) -> None:
        console: Console = open_console()
        console.sign_in(make_user(server, "viewer"))
        console.open(f"/devices?product_id={world.product_id}")
        assert console.page.inner_text(".pager span") == f"1–25 of {DEVICES}"
        console.page.click(".pager a[rel=next]")
        console.page.wait_for_selector(f".pager span:has-text('26–{DEVICES} of {DEVICES}')")
        assert len(console.page.query_selector_all("main table tbody tr")) == DEVICES - 25

    def test_search_and_filters(self, open_console: Any, server: Server, world: World) -> None:
        console: Console = open_console()
        console.sign_in(make_user(server, "viewer"))
        console.open(f"/devices?product_id={world.product_id}")
        console.page.fill("#f-q", "t-0007")
        console.page.select_option("#f-online", "false")
        console.page.click("form[role=search] button")
        console.page.wait_for_url("**q=t-0007**")
        rows = console.page.query_selector_all("main table tbody tr")
        assert len(rows) == 1
        assert "t-0007" in rows[0].inner_text()

    def test_at_a_phones_width(self, open_console: Any, server: Server, world: World) -> None:
        console: Console = open_console(viewport=(390, 844))
        console.sign_in(make_user(server, "operator"))
        for name in ("overview", "devices", "device", "campaign", "campaign-new", "package", "products"):
            console.open(world.pages()[name])
            # Nothing wider than the screen but the tables, which scroll inside their own box.
            overflow = console.page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
            assert overflow <= 1, name
            console.shot(f"phone-{name}")


class TestAViewer:
    def test_sees_everything_without_a_button_to_change_it(
        self, open_console: Any, server: Server, world: World
    ) -> None:
        console: Console = open_console()
        console.sign_in(make_user(server, "viewer"))
        for name, path in world.pages().items():
            response = console.open(path)
            assert response is not None
            if name in ("users", "user"):
                assert response.status == 403
                continue
            if name in ("campaign-new", "device-import"):
                assert response.status == 403  # forms to change things: not for a viewer
                continue
            assert response.status == 200, path
            # The only forms that post are signing out and their own account's.
            posting = console.page.eval_on_selector_all(
                "form[method=post]", "forms => forms.map(f => new URL(f.action).pathname)"
            )
            allowed = {"/console/sign-out", "/console/account/password", "/console/account/tokens"}
            assert set(posting) <= allowed, (path, posting)
        console.open(f"/campaigns/{world.campaign_id}")
        assert console.page.query_selector("button:has-text('Cancel')") is None
        console.shot("viewer-campaign")

    def test_and_the_server_refuses_what_a_viewer_would_change(
        self, open_console: Any, server: Server, world: World
    ) -> None:
        console: Console = open_console()
        console.sign_in(make_user(server, "viewer"))
        console.open("/")
        refused = {
            "/products": {"name": unique("p")},
            f"/products/{world.product_id}": {"description": "x"},
            f"/products/{world.product_id}/delete": {},
            "/modules": {"product_id": str(world.product_id), "name": "X"},
            f"/modules/{world.module_id}/delete": {},
            "/devices": {"product_id": str(world.product_id), "name": unique("d")},
            f"/devices/{world.device_id}": {"enabled": "false"},
            f"/devices/{world.device_id}/credentials": {},
            f"/devices/{world.device_id}/delete": {},
            "/devices/import": {"product_id": str(world.product_id), "csv": "name\nx\n"},
            f"/packages/{world.package_id}/enabled": {"enabled": "false"},
            f"/packages/{world.package_id}/delete": {},
            "/campaigns": {"name": "x", "package_id": str(world.package_id)},
            f"/campaigns/{world.campaign_id}/cancel": {},
            f"/campaigns/{world.campaign_id}/retry": {},
            f"/campaigns/{world.campaign_id}/devices/{world.device_id}/cancel": {},
            "/settings": {"max_file_size_mb": "1", "allowed_extensions": ".bin"},
            "/users": {"name": unique("u"), "role": "admin", "password": "long password"},
            f"/users/{world.user_id}": {"role": "admin"},
        }
        for path, data in refused.items():
            response = console.post(path, data)
            assert response.status_code == 403, (path, response.status_code)
        with httpx.Client(cookies=console.cookies(), timeout=30) as client:
            upload = client.post(
                f"{console.base}/packages",
                headers={"X-CSRF-Token": console.csrf()},
                data={"product_id": str(world.product_id), "name": "x", "version": "9.9.9"},
                files={"file": ("fw.bin", b"firmware", "application/octet-stream")},
            )
        assert upload.status_code == 403
        with server.api() as api:
            campaign = api.get(f"/campaigns/{world.campaign_id}").json()
            assert campaign["state"] != "canceled"
            assert api.get("/settings").json()["max_file_size_mb"] != 1

    def test_a_viewers_own_api_token_reads_but_changes_nothing(
        self, open_console: Any, server: Server, world: World
    ) -> None:
        console: Console = open_console()
        console.sign_in(make_user(server, "viewer"))
        console.open("/account")
        console.page.fill("#f-token_name", "laptop")
        console.page.click("form[action$='/account/tokens'] button")
        token = console.page.inner_text("#issued-token code")
        console.shot("account-token")
        with server.api(token) as api:
            assert api.get(f"/products/{world.product_id}").status_code == 200
            assert api.post("/products", json={"name": unique("p")}).status_code == 403
            assert api.patch(f"/packages/{world.package_id}", json={"enabled": False}).status_code == 403
