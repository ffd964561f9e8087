"""Rate limits at the broker, with limits low enough to reach: a reconnect loop is told to come back
later, a device sending too fast is read more slowly (nothing acknowledged is dropped), and an address
that keeps failing its logins is backed off before its credentials are even checked."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator

import httpx
import pytest

from mqtt_raw import connack_code, connect_packet
from skylift_testkit import Fleet, Server, SimDevice, firmware, running_server, wait_until

ACCEPTED, SERVER_UNAVAILABLE, NOT_AUTHORIZED = 0, 3, 5
CONNECTS_PER_MINUTE = 5
FAILED_LOGINS = 5
BACKOFF_S = 3
MESSAGES_PER_SECOND = 40


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with running_server(
        tmp_path_factory.mktemp("rates"),
        SKYLIFT_MQTT_DEVICE_CONNECTS_PER_MINUTE=str(CONNECTS_PER_MINUTE),
        SKYLIFT_MQTT_FAILED_LOGINS_PER_MINUTE=str(FAILED_LOGINS),
        SKYLIFT_MQTT_LOGIN_BACKOFF_SECONDS=str(BACKOFF_S),
        SKYLIFT_MQTT_DEVICE_MESSAGES_PER_SECOND=str(MESSAGES_PER_SECOND),
        SKYLIFT_MQTT_DEVICE_MESSAGE_BURST="10",
    ) as server:
        yield server


def metric(server: Server, name: str, reason: str | None = None) -> float:
    label = "" if reason is None else f'{{reason="{reason}"}}'
    found = re.search(rf"^{re.escape(name + label)} (\S+)$", httpx.get(f"{server.http_url}/metrics").text, re.M)
    return float(found.group(1)) if found else 0.0


def test_a_reconnect_loop_is_told_to_come_back_later(limited: Server) -> None:
    device = Fleet.create(limited.api()).device()
    login = connect_packet("looping", device["access_token"])
    codes = [connack_code(limited.mqtt_port, login) for _ in range(CONNECTS_PER_MINUTE + 3)]
    assert codes == [ACCEPTED] * CONNECTS_PER_MINUTE + [SERVER_UNAVAILABLE] * 3
    assert metric(limited, "skylift_mqtt_refused_connections_total", "too many connects") == 3
    other = Fleet.create(limited.api()).device()
    assert connack_code(limited.mqtt_port, connect_packet("other", other["access_token"])) == ACCEPTED


def test_failed_logins_back_the_address_off(limited: Server) -> None:
    device = Fleet.create(limited.api()).device()
    username = f"{device['name']}&{device['product_key']}"
    wrong = connect_packet("guess", username, "wrong")
    right = connect_packet("guess", username, device["device_secret"])
    source = "127.0.0.50"
    codes = [connack_code(limited.mqtt_port, wrong, source) for _ in range(FAILED_LOGINS)]
    # The back-off runs from the last failure; the checks below may take seconds on a loaded machine.
    last_failure = time.monotonic()
    assert codes == [NOT_AUTHORIZED] * FAILED_LOGINS
    # Backed off: even the right secret is not looked at, from that address; another address logs in.
    assert connack_code(limited.mqtt_port, right, source) == SERVER_UNAVAILABLE
    assert connack_code(limited.mqtt_port, right, "127.0.0.51") == ACCEPTED
    assert metric(limited, "skylift_mqtt_refused_connections_total", "login back-off") >= 1
    wait_until(lambda: connack_code(limited.mqtt_port, right, source) == ACCEPTED, timeout=BACKOFF_S * 5, interval=0.5)
    assert time.monotonic() - last_failure >= BACKOFF_S * 0.5


def test_a_device_sending_too_fast_is_slowed_and_loses_nothing(limited: Server) -> None:
    api = limited.api()
    fleet = Fleet.create(api)
    device = fleet.device()
    sim = SimDevice.token(limited, device)
    sim.client.max_inflight_messages_set(200)
    sim.connect()
    campaign = fleet.campaign(fleet.package(firmware(400, seed=74), "2.0.0")["id"])
    sim.notice()
    slowed_before = metric(limited, "skylift_mqtt_slowed_reads_total")
    count = 120
    started = time.monotonic()
    infos = [
        sim.client.publish(
            f"/ota/device/progress/{device['access_token']}", f'{{"step":"{1 + i % 90}","desc":"r{i}"}}', qos=1
        )
        for i in range(count)
    ]
    for info in infos:
        info.wait_for_publish(timeout=30)
    elapsed = time.monotonic() - started
    # 10 at once, then 40 a second: the last ones were acknowledged about 2.75 s after the first.
    assert elapsed >= (count - 10) / MESSAGES_PER_SECOND * 0.8, elapsed
    assert metric(limited, "skylift_mqtt_slowed_reads_total") > slowed_before
    wait_until(
        lambda: fleet.attempts(campaign["id"])[device["id"]]["step_desc"] == f"r{count - 1}",
        timeout=30,
        what="the last report to be applied",
    )
    sim.disconnect()
