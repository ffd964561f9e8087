"""Bulk import of devices over the API and from the CLI: all rows or none, with every wrong row named."""

from __future__ import annotations

import csv
import io
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from skylift_testkit import Fleet, Server, SimDevice, unique


@pytest.fixture
def fleet(api: httpx.Client) -> Fleet:
    return Fleet.create(api)


def send_csv(api: httpx.Client, fleet: Fleet, text: str, **params: Any) -> httpx.Response:
    return api.post(
        "/devices/import",
        params=params or {"product_id": fleet.product_id},
        content=text.encode(),
        headers={"content-type": "text/csv"},
    )


def listed(api: httpx.Client, fleet: Fleet) -> list[dict[str, Any]]:
    return list(api.get("/devices", params={"product_id": fleet.product_id}).json()["items"])


class TestCsv:
    def test_devices_gateways_and_tags_with_their_credentials(
        self, server: Server, api: httpx.Client, fleet: Fleet
    ) -> None:
        registered = fleet.device()
        text = (
            "\ufeffname,tags,gateway,address\n"  # the byte order mark spreadsheets write
            "gw-1,site-a,,\n"
            "sensor-1,site-a;beta,gw-1,S1\n"
            "\n"
            f"sensor-2,,{registered['id']},S1\n"
            f'"meter-1"," eu ; us ",,\n'
        )
        response = send_csv(api, fleet, text)
        assert response.status_code == 201, response.text
        created = response.json()["items"]
        assert [d["name"] for d in created] == ["gw-1", "sensor-1", "sensor-2", "meter-1"]
        by_name = {d["name"]: d for d in created}
        assert by_name["sensor-1"]["gateway_id"] == by_name["gw-1"]["id"]
        assert by_name["sensor-1"]["tags"] == ["beta", "site-a"]
        assert (by_name["sensor-2"]["gateway_id"], by_name["sensor-2"]["address"]) == (registered["id"], "S1")
        assert by_name["meter-1"]["tags"] == ["eu", "us"]
        assert len(listed(api, fleet)) == 5
        # The credentials answered once are the device's own.
        sim = SimDevice.token(server, by_name["meter-1"]).connect()
        assert sim.connected
        sim.disconnect()
        events = api.get("/audit", params={"target_type": "device", "target_id": by_name["gw-1"]["id"]}).json()
        assert events["items"][0]["details"]["source"] == "import"

    def test_one_wrong_row_imports_nothing_and_every_wrong_row_is_named(self, api: httpx.Client, fleet: Fleet) -> None:
        taken = fleet.device()
        text = (
            "name,tags,gateway,address\n"
            "good-1,,,\n"
            f"{taken['name']},,,\n"  # 2: the name is taken in the product
            "bad name,,,\n"  # 3: not a valid name
            "good-1,,,\n"  # 4: twice in the file
            "sub-1,,nowhere,A\n"  # 5: no such gateway
            "sub-2,,good-1,\n"  # 6: an address is needed
            "good-2,a b,,\n"  # 7: a tag with a space
            "good-3,,,,extra\n"  # 8: a cell too many
        )
        response = send_csv(api, fleet, text)
        assert response.status_code == 422
        error = response.json()["error"]
        assert "nothing was imported" in error["message"]
        wrong = {(e["row"], e["field"]) for e in error["errors"]}
        assert wrong == {(2, "name"), (3, "name"), (4, "name"), (5, "gateway"), (6, "address"), (7, "tags"), (8, None)}
        assert all(e["message"] for e in error["errors"])
        assert [d["id"] for d in listed(api, fleet)] == [taken["id"]]

    def test_the_header_names_the_columns(self, api: httpx.Client, fleet: Fleet) -> None:
        missing = send_csv(api, fleet, "tags,address\nx,y\n")
        assert (missing.status_code, missing.json()["error"]["field"]) == (422, "header")
        unknown = send_csv(api, fleet, "name,colour\nx,red\n")
        assert unknown.status_code == 422
        assert "colour" in unknown.json()["error"]["message"]
        only_names = send_csv(api, fleet, f"name\n{unique('n')}\n")
        assert only_names.status_code == 201
        assert send_csv(api, fleet, "name,tags,gateway,address\n").status_code == 422


class TestJsonAndProducts:
    def test_a_json_array_by_product_key(self, api: httpx.Client, fleet: Fleet) -> None:
        rows = [{"name": "j-1", "tags": ["x"]}, {"name": "j-2", "gateway": "j-1", "address": "A"}]
        response = api.post("/devices/import", params={"product_key": fleet.product_key}, json=rows)
        assert response.status_code == 201, response.text
        assert [d["name"] for d in response.json()["items"]] == ["j-1", "j-2"]
        assert all(d["access_token"] and d["device_secret"] for d in response.json()["items"])

    @pytest.mark.parametrize(
        ("body", "row", "field"),
        [
            ([{"name": "ok"}, {"name": "x", "enabled": True}], 2, "enabled"),
            ([{"name": "ok"}, "just-a-name"], 2, None),
            ([{"name": "ok"}, {"name": "y", "gateway": 0, "address": "A"}], 2, "gateway"),
        ],
    )
    def test_json_rows_are_checked_too(
        self, api: httpx.Client, fleet: Fleet, body: list[Any], row: int, field: str | None
    ) -> None:
        response = api.post("/devices/import", params={"product_id": fleet.product_id}, json=body)
        assert response.status_code == 422
        assert [(e["row"], e["field"]) for e in response.json()["error"]["errors"]] == [(row, field)]
        assert listed(api, fleet) == []

    def test_what_is_not_an_import(self, api: httpx.Client, fleet: Fleet) -> None:
        params = {"product_id": fleet.product_id}
        assert api.post("/devices/import", params=params, json={"name": "x"}).status_code == 422
        assert api.post("/devices/import", params=params, json=[]).status_code == 422
        xml = api.post("/devices/import", params=params, content=b"<x/>", headers={"content-type": "text/xml"})
        assert xml.status_code == 415
        broken = api.post("/devices/import", params=params, content=b"[{", headers={"content-type": "application/json"})
        assert broken.status_code == 400
        both = {"product_id": fleet.product_id, "product_key": fleet.product_key}
        assert api.post("/devices/import", params=both, json=[{"name": "x"}]).status_code == 422
        assert api.post("/devices/import", json=[{"name": "x"}]).status_code == 422
        unknown_key = api.post("/devices/import", params={"product_key": "nope"}, json=[{"name": "x"}])
        assert unknown_key.status_code == 404


def cli(server: Server, *args: str) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, "SKYLIFT_ADMIN_TOKEN": server.admin_token, "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-m", "skylift.cli", "devices", "import", *args, "--api", server.http_url],
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
    )


class TestCli:
    def test_imports_a_csv_file_and_writes_the_credentials(
        self, server: Server, api: httpx.Client, fleet: Fleet, tmp_path: Path
    ) -> None:
        source = tmp_path / "fleet.csv"
        source.write_text("name,tags,gateway,address\n" + "".join(f"cli-{n},batch,,\n" for n in range(25)))
        output = tmp_path / "credentials.csv"
        run = cli(server, str(source), "--product", fleet.product_key, "--output", str(output))
        assert run.returncode == 0, run.stderr
        assert "25 devices registered" in run.stderr
        rows = list(csv.DictReader(io.StringIO(output.read_text())))
        assert [r["name"] for r in rows] == [f"cli-{n}" for n in range(25)]
        assert all(r["access_token"] and r["device_secret"] for r in rows)
        assert output.stat().st_mode & 0o077 == 0
        assert len(listed(api, fleet)) == 25

    def test_a_wrong_file_imports_nothing_and_says_why(
        self, server: Server, api: httpx.Client, fleet: Fleet, tmp_path: Path
    ) -> None:
        source = tmp_path / "fleet.csv"
        source.write_text("name,tags,gateway,address\nok,,,\nbad name,,,\n")
        run = cli(server, str(source), "--product", fleet.product_key)
        assert run.returncode == 1
        assert "nothing was imported" in run.stderr
        assert "bad name" not in run.stdout
        assert "Traceback" not in run.stderr
        assert listed(api, fleet) == []
