"""Malformed device messages are logged and counted; they change nothing and stop nothing."""

from __future__ import annotations

import re

import httpx

from skylift_testkit import Fleet, Server, SimDevice, firmware, wait_until

GARBAGE = [
    b"not json",
    b"\xff\xfe\x00",
    b"[1, 2, 3]",
    b'{"id": "1"}',
    b'{"id": "1", "params": "v2"}',
    b'{"id": "1", "params": {"version": 7}}',
    b'{"id": "1", "params": {"version": ""}}',
    b'{"step": "abc"}',
    b'{"step": "101"}',
    b'{"step": true}',
    b'{"params": {"step": "-9"}}',
    b'{"step": "50", "desc": {"x": 1}}',
    # A NUL character: text PostgreSQL cannot store, refused on either database.
    b'{"step": "50", "desc": "flash\\u0000ing"}',
    b'{"id": "1", "params": {"version": "1.\\u00001"}}',
]


def malformed_total(server: Server) -> float:
    text = httpx.get(f"{server.http_url}/metrics").text
    return sum(float(v) for v in re.findall(r"^skylift_device_malformed_messages_total\{[^}]*\} (\S+)$", text, re.M))


def test_garbage_changes_nothing_and_is_counted(server: Server, api: httpx.Client) -> None:
    fleet = Fleet.create(api)
    noisy, quiet = fleet.device(), fleet.device()
    noisy_sim = SimDevice.token(server, noisy).connect()
    quiet_sim = SimDevice.token(server, quiet).connect()
    noisy_sim.inform("1.0.0")
    wait_until(lambda: api.get(f"/devices/{noisy['id']}").json()["versions"] == {"default": "1.0.0"})
    campaign = fleet.campaign(fleet.package(firmware(100, seed=40), "1.1.0")["id"])
    noisy_sim.notice()
    quiet_sim.notice()
    before = malformed_total(server)

    for payload in GARBAGE:
        noisy_sim.publish(f"/ota/device/inform/{noisy_sim.topic_id}", payload)
        noisy_sim.publish(f"/ota/device/progress/{noisy_sim.topic_id}", payload)
    noisy_sim.publish(f"/ota/device/progress/{noisy_sim.topic_id}", b'{"step": "5", "desc": "' + b"x" * 70_000 + b'"}')

    expected = before + 2 * len(GARBAGE) + 1
    wait_until(lambda: malformed_total(server) >= expected, what="every malformed message to be counted")
    assert api.get(f"/devices/{noisy['id']}").json()["versions"] == {"default": "1.0.0"}
    assert fleet.attempts(campaign["id"])[noisy["id"]]["state"] == "notified"

    assert noisy_sim.connected
    assert quiet_sim.connected
    quiet_sim.progress_002(100)
    fleet.wait_state(campaign["id"], quiet["id"], "succeeded")
    assert httpx.get(f"{server.http_url}/healthz").status_code == 200
    noisy_sim.disconnect()
    quiet_sim.disconnect()
