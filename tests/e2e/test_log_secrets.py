"""No secret reaches a log line: token devices' topics are redacted in Skylift's lines and the
broker's, and download URLs are logged without their signatures."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx

from skylift_testkit import Fleet, SimDevice, firmware, running_server


def test_tokens_and_signatures_stay_out_of_the_log(tmp_path: Path) -> None:
    with running_server(tmp_path / "data", SKYLIFT_LOG_LEVEL="DEBUG") as server, server.api() as api:
        fleet = Fleet.create(api)
        device, other = fleet.device(), fleet.device()
        token, other_token = device["access_token"], other["access_token"]
        sim = SimDevice.token(server, device).connect()
        campaign = fleet.campaign(fleet.package(firmware(800, seed=73), "2.0.0")["id"], device_ids=[device["id"]])
        url = sim.notice()["params"]["url"]
        signature = parse_qs(urlsplit(url).query)["signature"][0]
        assert httpx.get(url).status_code == 200
        # A malformed report, a report for another device, an EZtCloud-style topic and a refused filter:
        # each one is logged, with the topic it came on.
        sim.publish(f"/ota/device/progress/{token}", b"{not json")
        sim.publish(f"/ota/device/progress/{other_token}", {"step": "50", "desc": "not mine"})
        sim.publish(f"attributes/{token}", b"[]")
        sim.subscribe(f"/ota/device/upgrade/{other_token}")
        sim.progress_002(100)
        fleet.wait_state(campaign["id"], device["id"], "succeeded")
        sim.disconnect()
        log = server.log()

    assert "/dl/" in log  # the download was logged ...
    assert "signature" not in log  # ... without its query string
    assert signature not in log
    assert "malformed" in log
    assert "/ota/device/progress/***" in log
    for secret in (token, other_token, device["device_secret"], other["device_secret"]):
        assert secret not in log
