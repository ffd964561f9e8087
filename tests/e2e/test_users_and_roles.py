"""Users and roles on the management API: per-user tokens, what each role may do, the audit log's user."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from skylift_testkit import Fleet, Server, firmware, read_paths, unique

PASSWORD = "a long enough password"


@dataclass
class Account:
    id: int
    name: str
    token: str


def account(api: httpx.Client, role: str) -> Account:
    name = unique(role)
    created = api.post("/users", json={"name": name, "role": role, "password": PASSWORD})
    assert created.status_code == 201, created.text
    user = created.json()
    issued = api.post(f"/users/{user['id']}/tokens", json={"name": "tests"})
    assert issued.status_code == 201, issued.text
    return Account(user["id"], name, issued.json()["token"])


@pytest.fixture(scope="module")
def accounts(server: Server) -> Iterator[dict[str, Account]]:
    with server.api() as api:
        yield {role: account(api, role) for role in ("admin", "operator", "viewer")}


def client(server: Server, who: Account) -> httpx.Client:
    return server.api(who.token)


def mutating_routes(server: Server) -> list[tuple[str, str]]:
    schema = httpx.get(f"{server.http_url}/openapi.json", timeout=30).json()
    routes = []
    for path, operations in schema["paths"].items():
        for method in operations:
            if path.startswith("/api/v1") and method in ("post", "put", "patch", "delete"):
                routes.append((method.upper(), path))
    return routes


def concrete(path: str) -> str:
    # Any id will do: the role is checked before anything is looked up.
    return re.sub(r"\{[^}]+\}", "1", path.removeprefix("/api/v1"))


class TestTokens:
    def test_a_users_token_acts_as_that_user(self, server: Server, accounts: dict[str, Account]) -> None:
        with client(server, accounts["operator"]) as api:
            me = api.get("/users/me").json()
        assert me == {"name": accounts["operator"].name, "role": "operator", "user_id": accounts["operator"].id}

    def test_the_bootstrap_token_is_still_admin(self, api: httpx.Client) -> None:
        assert api.get("/users/me").json() == {"name": "admin token", "role": "admin", "user_id": None}

    def test_a_user_makes_and_revokes_tokens_of_their_own(self, server: Server, accounts: dict[str, Account]) -> None:
        with client(server, accounts["viewer"]) as api:
            issued = api.post("/users/me/tokens", json={"name": "laptop"})
            assert issued.status_code == 201, issued.text
            token = issued.json()
            listed = api.get("/users/me/tokens").json()["items"]
            assert token["id"] in [t["id"] for t in listed]
            assert all("token" not in t for t in listed)  # shown once, at creation
            with server.api(token["token"]) as other:
                assert other.get("/products").status_code == 200
                assert api.delete(f"/users/me/tokens/{token['id']}").status_code == 204
                assert other.get("/products").status_code == 401

    def test_unknown_tokens_are_refused(self, server: Server) -> None:
        for token in ("sky_" + "A" * 43, "nonsense"):
            with server.api(token) as api:
                assert api.get("/products").status_code == 401

    def test_a_changed_role_applies_to_the_token_at_once(self, server: Server, api: httpx.Client) -> None:
        who = account(api, "operator")
        with client(server, who) as theirs:
            assert theirs.post("/products", json={"name": unique("p")}).status_code == 201
            assert api.patch(f"/users/{who.id}", json={"role": "viewer"}).status_code == 200
            assert theirs.post("/products", json={"name": unique("p")}).status_code == 403
            assert api.patch(f"/users/{who.id}", json={"enabled": False}).status_code == 200
            assert theirs.get("/products").status_code == 401


class TestWhatEachRoleMay:
    def test_a_viewer_reads_everything(self, server: Server, api: httpx.Client, accounts: dict[str, Account]) -> None:
        fleet = Fleet.create(api)
        device = fleet.device()
        package = fleet.package(firmware(500, seed=1201), "1.0.0")
        campaign = fleet.campaign(package["id"], device_ids=[device["id"]], push=False)
        with client(server, accounts["viewer"]) as viewer:
            for path in read_paths(fleet.product_id, device["id"], package["id"], campaign["id"]):
                assert viewer.get(path).status_code == 200, path
            assert viewer.get(f"/devices/{device['id']}/credentials").status_code == 403
            assert viewer.get("/users").status_code == 403

    def test_a_viewer_changes_nothing(self, server: Server, accounts: dict[str, Account]) -> None:
        own = ("/api/v1/users/me/tokens", "/api/v1/users/me/tokens/{token_id}")
        routes = [route for route in mutating_routes(server) if route[1] not in own]
        assert len(routes) > 25
        with client(server, accounts["viewer"]) as viewer:
            for method, path in routes:
                response = viewer.request(method, concrete(path), json={})
                assert response.status_code == 403, (method, path, response.text)
                assert response.json()["error"]["code"] == "forbidden"

    def test_an_operator_runs_the_fleet_but_not_users_settings_or_credentials(
        self, server: Server, api: httpx.Client, accounts: dict[str, Account]
    ) -> None:
        with client(server, accounts["operator"]) as operator:
            fleet = Fleet.create(operator)
            device = fleet.device()
            package = fleet.package(firmware(500, seed=1202), "1.0.0")
            campaign = fleet.campaign(package["id"], device_ids=[device["id"]], push=False)
            assert operator.post(f"/campaigns/{campaign['id']}/cancel").status_code == 200
            assert operator.patch(f"/packages/{package['id']}", json={"enabled": False}).status_code == 200
            refused: list[tuple[str, str, dict[str, Any] | None]] = [
                ("PUT", "/settings", {"max_file_size_mb": 10}),
                ("GET", f"/devices/{device['id']}/credentials", None),
                ("POST", f"/devices/{device['id']}/credentials", None),
                ("GET", "/users", None),
                ("POST", "/users", {"name": unique("x"), "role": "admin", "password": PASSWORD}),
                ("PATCH", f"/users/{accounts['operator'].id}", {"role": "admin"}),
            ]
            for method, path, body in refused:
                response = operator.request(method, path, json=body)
                assert response.status_code == 403, (method, path, response.text)
        with client(server, accounts["admin"]) as admin:
            assert admin.get(f"/devices/{device['id']}/credentials").status_code == 200
            assert admin.get("/users").status_code == 200

    def test_the_audit_log_names_the_user(self, server: Server, accounts: dict[str, Account]) -> None:
        with client(server, accounts["operator"]) as operator:
            product = operator.post("/products", json={"name": unique("audited")}).json()
            events = operator.get("/audit", params={"target_type": "product", "target_id": product["id"]}).json()
        assert [(e["actor"], e["action"]) for e in events["items"]] == [(accounts["operator"].name, "product.create")]


class TestManagingUsers:
    def test_passwords_are_never_answered_or_audited(self, api: httpx.Client) -> None:
        who = account(api, "viewer")
        assert "password" not in str(api.get(f"/users/{who.id}").json())
        assert api.patch(f"/users/{who.id}", json={"password": "another long password"}).status_code == 200
        events = api.get("/audit", params={"target_type": "user", "target_id": who.id}).json()["items"]
        assert PASSWORD not in str(events)
        assert "another long password" not in str(events)
        assert {e["action"] for e in events} >= {"user.create", "user.update", "token.create"}

    def test_invalid_users_are_refused_naming_the_field(self, api: httpx.Client) -> None:
        for body, field in (
            ({"name": "has space", "role": "viewer", "password": PASSWORD}, "name"),
            ({"name": unique("u"), "role": "boss", "password": PASSWORD}, "role"),
            ({"name": unique("u"), "role": "viewer", "password": "short"}, "password"),
        ):
            response = api.post("/users", json=body)
            assert response.status_code == 422, response.text
            assert response.json()["error"]["field"] == field

    def test_a_deleted_users_token_is_refused(self, server: Server, api: httpx.Client) -> None:
        who = account(api, "operator")
        assert api.delete(f"/users/{who.id}").status_code == 204
        with client(server, who) as theirs:
            assert theirs.get("/products").status_code == 401

    def test_the_bootstrap_token_has_no_tokens_of_its_own(self, api: httpx.Client) -> None:
        assert api.post("/users/me/tokens", json={"name": "x"}).status_code == 409


def users_create(server: Server, *arguments: str) -> subprocess.CompletedProcess[str]:
    """`skylift users create ...` with the server's settings (its data dir), the password on stdin."""
    return subprocess.run(
        [sys.executable, "-m", "skylift.cli", "users", "create", *arguments, "--password-stdin"],
        input=PASSWORD + "\n",
        env={**os.environ, **server.settings},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


class TestTheCommandLine:
    def test_users_create_reads_the_password_from_stdin_with_the_servers_settings(
        self, server: Server, api: httpx.Client
    ) -> None:
        name = unique("cli")
        created = users_create(server, name, "--role", "admin")
        assert created.returncode == 0, created.stderr
        users = api.get("/users", params={"limit": 1000}).json()["items"]
        assert {"name": name, "role": "admin"}.items() <= next(u for u in users if u["name"] == name).items()
        again = users_create(server, name)
        assert again.returncode == 1
        assert "exists already" in again.stderr
