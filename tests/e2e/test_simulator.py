"""`skylift device` and `skylift simulate` against the real server: real MQTT, real downloads."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from skylift_testkit import Fleet, Server, firmware, wait_until

# Generous: a loaded 2-core machine connects, downloads and reports slowly.
DEVICE_SECONDS = 90


def skylift(*args: str) -> list[str]:
    return [sys.executable, "-m", "skylift.cli", *args]


@contextmanager
def playing(server: Server, *args: str) -> Iterator[subprocess.Popen[str]]:
    """`skylift device --once` in the background; killed if the test leaves before it ends."""
    command = skylift("device", "--port", str(server.mqtt_port), "--once", "--timeout", str(DEVICE_SECONDS), *args)
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
        process.wait()


def ended(process: subprocess.Popen[str]) -> tuple[int, str]:
    output, _ = process.communicate(timeout=DEVICE_SECONDS + 30)
    return process.returncode, output


@dataclass
class Run:
    """One device played through one campaign: what `skylift device --once` said, and the campaign."""

    fleet: Fleet
    device: dict[str, Any]
    campaign: dict[str, Any]
    code: int
    output: str

    def attempt(self, state: str) -> dict[str, Any]:
        return self.fleet.wait_state(self.campaign["id"], self.device["id"], state, timeout=30)


def upgrade(server: Server, api: httpx.Client, login: str, version: str, *args: str, **campaign: Any) -> Run:
    """Play a new device (`login`: token or product-key credentials) through a campaign to `version`."""
    fleet = Fleet.create(api)
    device = fleet.device()
    credentials = (
        ["--token", device["access_token"]]
        if login == "token"
        else ["--product-key", device["product_key"], "--name", device["name"], "--secret", device["device_secret"]]
    )
    package = fleet.package(firmware(150_000, seed=len(version)), version)
    with playing(server, *credentials, *args) as process:
        # The device may still be connecting: its notice then waits for it.
        made = fleet.campaign(package["id"], device_ids=[device["id"]], offline="deliver_on_connect", **campaign)
        code, output = ended(process)
    return Run(fleet, device, made, code, output)


class TestDevice:
    def test_a_token_device_upgrades_and_exits(self, server: Server, api: httpx.Client) -> None:
        run = upgrade(server, api, "token", "1.1.0", "--version", "1.0.0")
        assert run.code == 0, run.output
        assert "restarted on 1.1.0" in run.output
        assert run.attempt("succeeded")["progress"] == 100
        wait_until(lambda: api.get(f"/devices/{run.device['id']}").json()["versions"] == {"default": "1.1.0"})

    def test_a_product_key_device_upgrades_over_mqtt_blocks(self, server: Server, api: httpx.Client) -> None:
        run = upgrade(server, api, "product-key", "2.0.0", protocol="mqtt")
        assert run.code == 0, run.output
        assert "MQTT blocks" in run.output
        # A product-key device succeeds only by reporting the target version after its restart.
        run.attempt("succeeded")

    def test_an_eztcloud_device_resumes_its_download_and_restarts_once(self, server: Server, api: httpx.Client) -> None:
        run = upgrade(server, api, "token", "1.2.0", "--dialect", "eztcloud", "--download", "range", "--reboot")
        assert run.code == 0, run.output
        assert "restarts before downloading" in run.output
        run.attempt("succeeded")

    def test_a_failing_device_reports_its_step_and_exits_non_zero(self, server: Server, api: httpx.Client) -> None:
        run = upgrade(server, api, "product-key", "1.3.0", "--fail", "-2")
        assert run.code == 1, run.output
        assert run.attempt("failed")["failure_reason"] == "download failed"

    def test_a_wrong_secret_is_refused_at_once(self, server: Server, api: httpx.Client) -> None:
        device = Fleet.create(api).device()
        login = ["--product-key", device["product_key"], "--name", device["name"], "--secret", "wrong"]
        with playing(server, *login) as process:
            code, output = ended(process)
        assert code == 1
        assert "login refused" in output


class TestSimulate:
    def test_a_mixed_fleet_ends_as_its_behaviours_say(self, server: Server, api: httpx.Client, tmp_path: Path) -> None:
        """200 devices of the three families, 5 % failing with the seeds' steps: the campaign's counts are
        exactly what the simulator expected, and a second run reads the credentials the first one wrote."""
        fleet = Fleet.create(api)
        package = fleet.package(firmware(64_000, seed=77), "3.0.0")
        credentials, report = tmp_path / "devices.json", tmp_path / "report.json"
        common = [
            "--product", fleet.product_key, "--dialect", "mixed", "--api", f"{server.http_url}/api/v1",
            "--token", server.admin_token, "--port", str(server.mqtt_port), "--timeout", "150",
        ]  # fmt: skip
        run = subprocess.run(
            skylift("simulate", "--devices", "200", *common, "--fail-rate", "0.05", "--register",
                    "--credentials", str(credentials), "--package", str(package["id"]), "--report", str(report)),
            capture_output=True, text=True, timeout=200, check=False,
        )  # fmt: skip
        assert run.returncode == 0, run.stderr[-4000:]
        outcome = json.loads(report.read_text())
        campaign = api.get(f"/campaigns/{outcome['campaign']['id']}").json()
        assert outcome["expected"]["counts"] == {"failed": 10, "succeeded": 190}
        assert campaign["counts"] == outcome["expected"]["counts"]
        assert campaign["failure_reasons"] == outcome["expected"]["failure_reasons"]
        assert sum(campaign["failure_reasons"].values()) == 10
        assert set(campaign["failure_reasons"]) <= {
            "upgrade failed",
            "download failed",
            "verification failed",
            "flashing failed",
        }
        saved = json.loads(credentials.read_text())["devices"]
        assert len(saved) == 200
        assert credentials.stat().st_mode & 0o077 == 0  # secrets: the owner's only

        # Some of the same devices again, from the file, now on 3.0.0: they follow a campaign made before
        # they connect, one of them never connects and stays pending (the campaign waits for it).
        first = [device["id"] for device in saved[:5]]
        # The first run has ended: its devices are shown offline before the campaign is made.
        wait_until(
            lambda: not any(api.get(f"/devices/{d}").json()["online"] for d in first),
            timeout=30,
            what="the first run's devices shown offline",
        )
        newer = fleet.package(firmware(32_000, seed=78), "3.1.0")
        waiting = fleet.campaign(newer["id"], device_ids=first, offline="deliver_on_connect")
        again = subprocess.run(
            skylift("simulate", "--devices", "5", *common, "--credentials", str(credentials), "--version", "3.0.0",
                    "--offline-rate", "0.2", "--campaign", str(waiting["id"]), "--report", str(report)),
            capture_output=True, text=True, timeout=200, check=False,
        )  # fmt: skip
        assert again.returncode == 0, again.stderr[-4000:]
        assert json.loads(report.read_text())["expected"]["counts"] == {"pending": 1, "succeeded": 4}
        assert api.get(f"/campaigns/{waiting['id']}").json()["counts"] == {"pending": 1, "succeeded": 4}
