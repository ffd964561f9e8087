"""Alibaba's own Python device SDK (aiot linkkit), unchanged, upgrades through Skylift.

The SDK never subscribes to its OTA topics (it logs in with `_ss=1`: the platform subscribes it), reports
versions on `/ota/device/inform`, takes notices from `/ota/device/upgrade` or the reply to
`thing/ota/firmware/get`, downloads with its own HTTP client and checks `sign` with `signMethod`
spelled `Md5` or `SHA256`. The device runs as tests/vendor/linkkit_device.py in a virtualenv of its
own (the SDK needs paho-mqtt 1.x), built once into `.cache/` and reused by later runs.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import httpx
import pytest

from skylift_testkit import Fleet, Server, firmware, md5, wait_until

LINKKIT = "aliyun-iot-linkkit==1.2.13"
PAHO = "paho-mqtt<2"
ROOT = Path(__file__).resolve().parents[2]
DEVICE_SCRIPT = ROOT / "tests" / "vendor" / "linkkit_device.py"
DEVICE_TIMEOUT = 90.0


def _venv_python(venv: Path) -> Path:
    return venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def _build_venv(venv: Path) -> str | None:
    """Build the SDK's virtualenv at `venv`; the reason when it cannot be built."""
    building = venv.with_name(venv.name + ".building")
    shutil.rmtree(building, ignore_errors=True)
    steps = [
        [sys.executable, "-m", "venv", str(building)],
        [str(_venv_python(building)), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", LINKKIT, PAHO],
    ]
    for step in steps:
        result = subprocess.run(step, capture_output=True, text=True, timeout=600, check=False)
        if result.returncode != 0:
            shutil.rmtree(building, ignore_errors=True)
            return f"{' '.join(step[:4])} failed:\n{result.stdout[-2000:]}{result.stderr[-2000:]}"
    building.rename(venv)
    return None


@pytest.fixture(scope="session")
def linkkit_python() -> Path:
    """The interpreter of a virtualenv holding the SDK, keyed by the pinned versions."""
    venv = ROOT / ".cache" / f"venv-{LINKKIT.replace('==', '-')}-paho1"
    if not _venv_python(venv).exists():
        venv.parent.mkdir(parents=True, exist_ok=True)
        reason = _build_venv(venv)
        if reason is not None:
            # In CI the SDK must be there: a missing package index is a failure, not a reason to skip.
            if os.environ.get("CI") == "true":
                pytest.fail(f"cannot install Alibaba's Python SDK: {reason}")
            pytest.skip(f"cannot install Alibaba's Python SDK (no package index?): {reason}")
    return _venv_python(venv)


class SdkDevice:
    """tests/vendor/linkkit_device.py as a subprocess; its JSON lines are collected as they come."""

    def __init__(self, python: Path, server: Server, device: dict[str, Any], workdir: Path, *options: str) -> None:
        self.stderr_path = workdir / f"{device['name']}-sdk.log"
        self.events: list[dict[str, Any]] = []
        self.device = device
        self.server = server
        self.server_log_start = len(server.log())
        # Set by a test once there is more to tell on failure (the attempt's state, say).
        self.explain: Callable[[], str] = lambda: ""
        command = [
            str(python),
            str(DEVICE_SCRIPT),
            "--host=127.0.0.1",
            f"--port={server.mqtt_port}",
            f"--product-key={device['product_key']}",
            f"--device-name={device['name']}",
            f"--device-secret={device['device_secret']}",
            f"--timeout={DEVICE_TIMEOUT}",
            f"--workdir={workdir}",
            *options,
        ]
        with self.stderr_path.open("wb") as stderr:
            self.process = subprocess.Popen(
                command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr, text=True
            )
        assert self.process.stdout is not None
        self._reader = threading.Thread(target=self._read, args=(self.process.stdout,), daemon=True)
        self._reader.start()

    def _read(self, stream: IO[str]) -> None:
        for line in stream:
            try:
                self.events.append(json.loads(line))
            except ValueError:
                self.events.append({"event": "unparsed", "line": line.rstrip()})

    def event(self, name: str, timeout: float = 30) -> dict[str, Any]:
        """The first `name` event; fails at once if the device gave up before it."""

        def seen() -> dict[str, Any] | str | None:
            for event in list(self.events):
                if event["event"] == name:
                    return event
                if event["event"] in ("failed", "timeout", "unsupported"):
                    return f"the SDK device gave up ({event['event']}) before {name!r}"
            if self.process.poll() is not None and not self._reader.is_alive():
                return f"the SDK device exited before {name!r}"
            return None

        try:
            found = wait_until(seen, timeout=timeout, what=f"the SDK device's {name!r}")
        except AssertionError as error:
            found = str(error)
        if isinstance(found, str):
            raise AssertionError(f"{found}\n{self.report()}")
        return found

    def stop(self) -> int:
        """End the device (it stays online until its stdin ends) and return its exit status."""
        if self.process.stdin is not None and not self.process.stdin.closed:
            self.process.stdin.close()
        try:
            return self.process.wait(timeout=30)
        finally:
            self._reader.join(timeout=5)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def report(self) -> str:
        """What the device printed, the tail of the SDK's log and the server's lines about the device."""
        events = "\n".join(json.dumps(event) for event in self.events)
        sdk_log = self.stderr_path.read_text(errors="replace")[-4000:] if self.stderr_path.exists() else ""
        server_lines = self.server.log()[self.server_log_start :].splitlines()[-60:]
        return (
            f"{self.explain()}\ndevice events:\n{events}\nSDK log (tail):\n{sdk_log}\n"
            "server log since the device started (tail):\n" + "\n".join(server_lines)
        )


@pytest.fixture
def run_sdk_device(linkkit_python: Path, server: Server, tmp_path: Path) -> Iterator[Any]:
    started: list[SdkDevice] = []

    def start(device: dict[str, Any], *options: str) -> SdkDevice:
        sdk = SdkDevice(linkkit_python, server, device, tmp_path, *options)
        started.append(sdk)
        return sdk

    yield start
    for sdk in started:
        sdk.kill()


def versions(api: httpx.Client, device: dict[str, Any]) -> dict[str, str]:
    return dict(api.get(f"/devices/{device['id']}").json()["versions"])


def explain_attempt(fleet: Fleet, sdk: SdkDevice, campaign: dict[str, Any]) -> None:
    sdk.explain = lambda: f"attempt: {fleet.attempts(campaign['id'])[sdk.device['id']]}"


def finish(fleet: Fleet, sdk: SdkDevice, campaign: dict[str, Any], target: str) -> dict[str, Any]:
    """The device reboots into `target`, reports it, and its attempt succeeds."""
    sdk.event("upgraded", timeout=60)
    device = sdk.device
    try:
        attempt = fleet.wait_state(campaign["id"], device["id"], "succeeded", timeout=30)
        wait_until(lambda: versions(fleet.api, device) == {"default": target}, timeout=30, what="the new version")
    except AssertionError as error:
        raise AssertionError(f"{error}\n{sdk.report()}") from None
    status = sdk.stop()
    assert status == 0, sdk.report()
    return attempt


class TestPushedNotice:
    def test_md5_package_with_progress_reports(self, server: Server, api: httpx.Client, run_sdk_device: Any) -> None:
        fleet = Fleet.create(api)
        device = fleet.device()
        sdk = run_sdk_device(device, "--mode=push", "--version=1.0.0", "--progress=alink")
        sdk.event("version_reported")
        wait_until(lambda: versions(api, device) == {"default": "1.0.0"}, timeout=30, what="the boot version")

        image = firmware(250_000, seed=801)
        package = fleet.package(image, "1.1.0", sign_method="MD5")
        campaign = fleet.campaign(package["id"])
        explain_attempt(fleet, sdk, campaign)

        notice = sdk.event("notice")
        assert notice["notice_type"] == 1  # pushed on /ota/device/upgrade
        assert notice["version"] == "1.1.0"
        assert notice["sign_method"] == "Md5"
        assert notice["sign"] == md5(image)
        assert int(notice["size"]) == len(image)
        assert notice["module"] == "default"
        downloaded = sdk.event("downloaded")
        assert downloaded["rc"] == "SUCCESS"
        assert downloaded["bytes"] == len(image)

        attempt = finish(fleet, sdk, campaign, "1.1.0")
        assert attempt["progress"] == 100
        assert [event["step"] for event in sdk.events if event["event"] == "progress"] == [0, 100]

    def test_sha256_package_as_alibabas_demo_does_it(
        self, server: Server, api: httpx.Client, run_sdk_device: Any
    ) -> None:
        """No progress reports at all: download, check, reboot, report the new version."""
        fleet = Fleet.create(api)
        device = fleet.device()
        sdk = run_sdk_device(device, "--mode=push", "--version=3.0.0", "--progress=none")
        sdk.event("version_reported")
        wait_until(lambda: versions(api, device) == {"default": "3.0.0"}, timeout=30, what="the boot version")

        image = firmware(120_000, seed=802)
        package = fleet.package(image, "3.1.0", sign_method="SHA256")
        campaign = fleet.campaign(package["id"])
        explain_attempt(fleet, sdk, campaign)

        notice = sdk.event("notice")
        assert notice["sign_method"] == "SHA256"
        assert notice["sign"] == hashlib.sha256(image).hexdigest()
        assert sdk.event("downloaded")["rc"] == "SUCCESS"
        finish(fleet, sdk, campaign, "3.1.0")


class TestAskedFor:
    def test_query_ota_firmware_gets_a_campaign_without_push(
        self, server: Server, api: httpx.Client, run_sdk_device: Any
    ) -> None:
        fleet = Fleet.create(api)
        device = fleet.device()
        image = firmware(80_000, seed=803)
        package = fleet.package(image, "5.0.1", sign_method="MD5")
        campaign = fleet.campaign(package["id"], push=False)

        sdk = run_sdk_device(device, "--mode=query", "--version=5.0.0", "--progress=alink")
        explain_attempt(fleet, sdk, campaign)
        notice = sdk.event("notice")
        assert notice["notice_type"] == 2  # the answer on thing/ota/firmware/get_reply
        assert notice["version"] == "5.0.1"
        assert notice["sign_method"] == "Md5"
        assert notice["sign"] == md5(image)
        finish(fleet, sdk, campaign, "5.0.1")
