"""Skylift on an external Mosquitto 2.0 with its plugin: the embedded broker's device suites, unchanged,
against Mosquitto (devices connect to Mosquitto; Skylift is one of its clients)."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import test_wildcard_subscriptions as wildcards
from test_alibaba_python_sdk import TestAskedFor, TestPushedNotice, linkkit_python, run_sdk_device  # noqa: F401
from test_auto_subscribe import TestNeverSubscribing, TestReconnecting, TestSubscribingAsWell  # noqa: F401
from test_block_download import TestProductKeyDevice as TestBlocksForProductKeyDevices  # noqa: F401
from test_block_download import TestRefusedBlocks  # noqa: F401
from test_block_download import TestTokenDevice as TestBlocksForTokenDevices  # noqa: F401
from test_device_flows import TestFailureAndRetry, TestMessageOrder, TestProductKeyDevice, TestTokenDevice  # noqa: F401
from test_device_requests import TestFirmwareGet, TestRequestTopic  # noqa: F401
from test_eztcloud_poll import TestPollWithCampaigns, TestPollWithLatestForEveryone  # noqa: F401
from test_gateways import TestGatewayActsOnlyForItsOwn, TestGatewayUpgradesSubDevices  # noqa: F401
from test_malformed import test_garbage_changes_nothing_and_is_counted  # noqa: F401
from test_rollouts import TestOfflineDevices, TestStagedRollout, fleet  # noqa: F401
from test_security import TestDeviceLogin, TestRevokedCredentials, TestTopicOwnership  # noqa: F401
from test_signed_login import TestRefused  # noqa: F401
from test_wildcard_subscriptions import TestDelivery, TestGranted  # noqa: F401

from mosquitto_kit import SERVICE_PASSWORD, Mosquitto, mosquitto_or_skip, plugin_file, server_on_mosquitto  # noqa: F401
from skylift_testkit import Fleet, Server, SimDevice, firmware

# The suites imported above run again in this module, with its `server`: devices connect to Mosquitto.


@pytest.fixture(scope="module")
def on_mosquitto(
    tmp_path_factory: pytest.TempPathFactory,
    plugin_file: Path,  # noqa: F811
) -> Iterator[tuple[Server, Mosquitto]]:
    with server_on_mosquitto(tmp_path_factory.mktemp("external"), plugin_file) as pair:
        yield pair


@pytest.fixture(scope="module")
def server(on_mosquitto: tuple[Server, Mosquitto]) -> Server:
    return on_mosquitto[0]


class TestRetainedAndWills(wildcards.TestRetainedAndWills):
    # Mosquitto 2.0 gives a plugin no look at a CONNECT's Will: it is checked when the broker sends it.
    test_a_will_on_another_devices_topic_refuses_the_connect = None  # type: ignore[assignment]

    def test_a_will_on_another_devices_topic_never_reaches_it(self, server: Server, api: httpx.Client) -> None:
        own = Fleet.create(api)
        forger_device, victim_device = own.device(), own.device()
        victim = wildcards.subscribed(SimDevice.product_key(server, victim_device).connect(subscribe=False), "#")
        forger = SimDevice.product_key(server, forger_device)
        forged = {"code": "1000", "data": {"version": "6.6.6", "url": "http://evil.example/fw.bin"}, "id": 1}
        forger.client.will_set(f"/ota/device/upgrade/{victim.topic_id}", json.dumps(forged), qos=1, retain=True)
        forger.connect(subscribe=False)
        # The socket closes without DISCONNECT: the broker sends the Will, if it may.
        forger.client.loop_stop()
        forger.client.socket().shutdown(socket.SHUT_RDWR)
        assert victim.no_message(within=1.0)

        wildcards.online(api, victim_device)
        own.campaign(own.package(firmware(600, seed=95), "2.3.1")["id"], device_ids=[victim_device["id"]])
        assert victim.notice()["data"]["version"] == "2.3.1"
        assert victim.no_message(within=0.5)
        # Nor was it kept to be replayed to a device that subscribes later.
        late = wildcards.subscribed(SimDevice.product_key(server, own.device()).connect(subscribe=False), "#")
        assert late.no_message(within=1.0)
        late.disconnect()
        victim.disconnect()


class TestLoginCheck:
    URL = "/broker/v1/login"

    def test_only_the_plugin_may_ask(self, server: Server, api: httpx.Client) -> None:
        device = Fleet.create(api).device()
        body = {"username": device["access_token"], "password": "", "client_id": "c"}
        for headers in ({}, {"Authorization": "Bearer not-the-service-password"}):
            answer = httpx.post(f"{server.http_url}{self.URL}", json=body, headers=headers)
            assert answer.status_code == 401, answer.text
            assert "access_token" not in answer.text

    def test_the_answer_holds_the_devices_own_topics_only(self, server: Server, api: httpx.Client) -> None:
        own = Fleet.create(api)
        device, other = own.device(), own.device()
        plugin = {"Authorization": f"Bearer {SERVICE_PASSWORD}"}
        login = {"username": f"{device['name']}&{own.product_key}", "password": device["device_secret"]}
        answer = httpx.post(f"{server.http_url}{self.URL}", json={**login, "client_id": "c|_ss=1|"}, headers=plugin)
        assert answer.status_code == 200, answer.text
        verdict = answer.json()
        assert verdict["allow"] is True
        assert verdict["auto_subscribe"] is True
        assert f"/ota/device/upgrade/{own.product_key}/{device['name']}" in verdict["auto_topics"]
        assert f"/ota/device/progress/{device['access_token']}" in verdict["publish"]
        assert other["access_token"] not in json.dumps(verdict)
        wrong = httpx.post(f"{server.http_url}{self.URL}", json={**login, "password": "wrong"}, headers=plugin)
        assert wrong.json() == {"allow": False}
        too_long = httpx.post(f"{server.http_url}{self.URL}", json={"username": "u" * 300}, headers=plugin)
        assert too_long.status_code == 422
        assert "username" in too_long.text


def test_the_command_builds_the_plugin_and_prints_its_configuration(tmp_path: Path) -> None:
    mosquitto_or_skip()
    output = tmp_path / "lib" / "skylift_plugin.so"
    done = subprocess.run(
        [sys.executable, "-m", "skylift.cli", "mosquitto-plugin", str(output)], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert output.stat().st_size > 0
    assert f"plugin {output}" in done.stdout
    assert "plugin_opt_auth_url http://<skylift host>:8080/broker/v1/login" in done.stdout
