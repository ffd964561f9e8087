"""The console's front door: sign-in and sign-out, sessions, CSRF, languages."""

from __future__ import annotations

from typing import Any

import httpx

from console_kit import PASSWORD, field_error, make_user
from skylift_testkit import Server


class TestSigningIn:
    def test_root_leads_to_the_sign_in_page_and_back(self, open_console: Any, server: Server) -> None:
        console = open_console()
        name = make_user(server, "operator")
        console.page.goto(f"{server.http_url}/")
        console.page.wait_for_selector("#f-name")
        assert "/console/sign-in" in console.page.url
        console.shot("sign-in")
        console.page.fill("#f-name", name)
        console.page.fill("#f-password", PASSWORD)
        console.page.click("form.stack button[type=submit]")
        console.page.wait_for_selector("a.me")
        assert console.page.inner_text("a.me").startswith(name)
        assert console.page.url.endswith("/console/")

    def test_a_wrong_password_says_so_beside_the_field(self, open_console: Any, server: Server) -> None:
        console = open_console()
        name = make_user(server, "viewer")
        console.open("/sign-in")
        console.page.fill("#f-name", name)
        console.page.fill("#f-password", "not the password")
        console.page.click("form.stack button[type=submit]")
        assert field_error(console.page, "password") == "Wrong user name or password."
        assert console.page.input_value("#f-name") == name
        console.shot("sign-in-error")

    def test_the_session_cookie_is_http_only_and_same_site(self, open_console: Any, server: Server) -> None:
        console = open_console()
        console.sign_in(make_user(server, "viewer"))
        session = next(c for c in console.page.context.cookies() if c["name"] == "skylift_session")
        assert session["httpOnly"] is True
        assert session["sameSite"] == "Lax"

    def test_a_page_asked_for_before_signing_in_is_shown_after(self, open_console: Any, server: Server) -> None:
        console = open_console()
        name = make_user(server, "viewer")
        console.open("/?from=test")
        console.page.wait_for_selector("#f-name")
        console.page.fill("#f-name", name)
        console.page.fill("#f-password", PASSWORD)
        console.page.click("form.stack button[type=submit]")
        console.page.wait_for_url("**/console/?from=test")

    def test_signing_out_ends_the_session_on_the_server(self, open_console: Any, server: Server) -> None:
        console = open_console()
        console.sign_in(make_user(server, "viewer"))
        stolen = console.cookies()["skylift_session"]
        console.page.click("header form button")
        console.page.wait_for_selector("#f-name")
        assert console.page.inner_text(".notice") == "You are signed out."
        # The old cookie, replayed, opens nothing.
        with httpx.Client(cookies={"skylift_session": stolen}, timeout=30) as client:
            response = client.get(f"{server.http_url}/console/", follow_redirects=False)
        assert response.status_code == 303
        assert "/console/sign-in" in response.headers["location"]


class TestCsrf:
    def test_a_form_without_its_token_is_refused(self, open_console: Any, server: Server) -> None:
        console = open_console()
        console.sign_in(make_user(server, "viewer"))
        refused = console.post("/sign-out", {}, with_token=False)
        assert refused.status_code == 403
        assert "expired" in refused.text
        wrong = console.post("/sign-out", {"csrf": "0" * 64}, with_token=False)
        assert wrong.status_code == 403
        # Still signed in: nothing was done.
        console.open("/")
        console.page.wait_for_selector("a.me")

    def test_the_sign_in_form_needs_its_token_too(self, server: Server) -> None:
        with httpx.Client(timeout=30) as client:
            response = client.post(f"{server.http_url}/console/sign-in", data={"name": "x", "password": "y"})
        assert response.status_code == 403


class TestLanguages:
    def test_the_browsers_language_is_the_default(self, open_console: Any, server: Server) -> None:
        console = open_console(accept_language="zh-CN,zh;q=0.9,en;q=0.5")
        console.language = "zh"
        console.open("/sign-in")
        assert console.page.inner_text("h1") == "登录"
        assert console.page.get_attribute("html", "lang") == "zh-CN"
        console.shot("sign-in")

    def test_the_switch_is_remembered(self, open_console: Any, server: Server) -> None:
        console = open_console()
        console.sign_in(make_user(server, "viewer"))
        console.switch_to("zh")
        assert console.page.inner_text("h1") == "概览"
        console.open("/")
        assert console.page.inner_text("h1") == "概览"
        console.switch_to("en")
        assert console.page.inner_text("h1") == "Overview"

    def test_a_wrong_password_in_chinese(self, open_console: Any, server: Server) -> None:
        console = open_console(accept_language="zh")
        console.open("/sign-in")
        console.page.fill("#f-name", "nobody")
        console.page.fill("#f-password", "wrong password")
        console.page.click("form.stack button[type=submit]")
        assert field_error(console.page, "password") == "用户名或密码错误。"


class TestSlowingDown:
    def test_repeated_failures_make_the_user_wait(self, open_console: Any, server: Server) -> None:
        console = open_console()
        name = make_user(server, "viewer")
        # Each failure from the third on doubles the wait, so a try soon comes while the user must wait
        # (however slow this machine is); the answer then says for how long, beside the name.
        for _ in range(12):
            console.open("/sign-in")
            console.page.fill("#f-name", name)
            console.page.fill("#f-password", "wrong password")
            console.page.click("form.stack button[type=submit]")
            console.page.wait_for_selector('[data-field="password"] .error, [data-field="name"] .error')
            if console.page.query_selector('[data-field="name"] .error'):
                break
        assert "try again in" in field_error(console.page, "name")
