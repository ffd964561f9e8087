"""Helpers of the console's browser tests: a console in a browser, users, what a page shows."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from playwright.sync_api import ConsoleMessage, Page, Request, Response

from skylift_testkit import Server, unique

CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOTS = Path(__file__).resolve().parent.parent / "console-screenshots"
PASSWORD = "console password 1"
# Generous: the machine may be slow and busy; every wait is for a condition, never a fixed time.
TIMEOUT_MS = 30_000
LAUNCH_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-default-apps",
    "--disable-extensions",
    "--disable-sync",
    "--no-first-run",
    "--mute-audio",
]


def real_clock_environment() -> dict[str, str]:
    """This process's environment without libfaketime (which the shifted-date run preloads)."""
    return {k: v for k, v in os.environ.items() if k != "LD_PRELOAD" and not k.startswith("FAKETIME")}


def make_user(server: Server, role: str, name: str | None = None) -> str:
    """A user with PASSWORD, created with the bootstrap admin token; answers the name."""
    name = name or unique(role)
    with server.api() as api:
        created = api.post("/users", json={"name": name, "role": role, "password": PASSWORD})
        assert created.status_code == 201, created.text
    return name


@dataclass
class Console:
    """One browser (context) signed in or not, on the console of `server`."""

    server: Server
    page: Page
    problems: list[str] = field(default_factory=list)
    language: str = "en"

    @property
    def base(self) -> str:
        return f"{self.server.http_url}/console"

    def open(self, path: str) -> Response | None:
        return self.page.goto(self.base + path)

    def sign_in(self, name: str, password: str = PASSWORD) -> None:
        self.open("/sign-in")
        self.page.fill("#f-name", name)
        self.page.fill("#f-password", password)
        self.page.click("form.stack button[type=submit]")
        self.page.wait_for_selector("a.me")

    def switch_to(self, language: str) -> None:
        self.page.click(f"[data-language={language}]")
        self.page.wait_for_selector(f"strong[lang={language}]")
        self.language = language

    def shot(self, name: str) -> None:
        """Save what the page shows now (the whole page) as <language>/<name>.png."""
        folder = SCREENSHOTS / self.language
        folder.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=str(folder / f"{name}.png"), full_page=True)

    def accept_dialogs(self) -> None:
        self.page.on("dialog", lambda dialog: dialog.accept())

    def csrf(self) -> str:
        token = self.page.get_attribute('meta[name="csrf-token"]', "content")
        assert token
        return token

    def cookies(self) -> dict[str, str]:
        return {c["name"]: c["value"] for c in self.page.context.cookies()}

    def post(self, path: str, data: dict[str, Any], with_token: bool = True) -> httpx.Response:
        """A form post outside the browser, with this browser's cookies (and its CSRF token)."""
        fields = {**data, **({"csrf": self.csrf()} if with_token else {})}
        with httpx.Client(cookies=self.cookies(), timeout=30) as client:
            return client.post(self.base + path, data=fields)


def watch(console: Console) -> None:
    page = console.page

    def on_console(message: ConsoleMessage) -> None:
        # A page answered with an error status (a refused form) is reported by the browser as a failed
        # resource: that is the page's answer, not a script error. Assets are checked below.
        if message.type == "error" and not message.text.startswith("Failed to load resource"):
            console.problems.append(f"console error on {page.url}: {message.text}")

    def on_response(response: Response) -> None:
        request: Request = response.request
        if response.status >= 400 and request.resource_type != "document" and not _expected(request):
            console.problems.append(f"{response.status} for {request.resource_type} {request.url}")

    def on_failed(request: Request) -> None:
        # Leaving a page aborts what it was still fetching (a live part's refresh): not an error of the page.
        if request.failure != "net::ERR_ABORTED":
            console.problems.append(f"failed {request.resource_type} {request.url}: {request.failure}")

    page.on("pageerror", lambda error: console.problems.append(f"script error on {page.url}: {error}"))
    page.on("console", on_console)
    page.on("response", on_response)
    page.on("requestfailed", on_failed)


def _expected(request: Request) -> bool:
    # The page's own scripts post forms that the server may refuse with field errors (an upload).
    return request.resource_type in ("xhr", "fetch") and request.method == "POST"


def field_error(page: Page, name: str) -> str:
    """The error shown beside a form field."""
    return page.inner_text(f'[data-field="{name}"] .error')


def number_in(text: str) -> int:
    found = re.search(r"\d+", text)
    assert found, text
    return int(found.group())
