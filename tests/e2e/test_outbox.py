"""Nothing shown as notified is lost: kill -9 while notices go out, restart, every device hears its notice;
a device whose connection ended before it answered its notice hears it again when it comes back."""

from __future__ import annotations

import signal
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

from skylift_testkit import Fleet, Ports, Server, SimDevice, firmware, running_server, wait_until

DEVICES = 200


def test_kill_during_a_fan_out_then_every_notified_device_gets_its_notice(tmp_path: Path) -> None:
    data_dir, ports = tmp_path / "data", Ports()
    sims: list[SimDevice] = []
    try:
        with running_server(data_dir, ports) as server, server.api() as api:
            fleet = Fleet.create(api)
            sims.extend(SimDevice.token(server, fleet.device()) for _ in range(DEVICES))
            with ThreadPoolExecutor(max_workers=20) as pool:
                list(pool.map(SimDevice.connect, sims))
            package = fleet.package(firmware(500, seed=900), "2.0.0")
            campaign = fleet.campaign(package["id"])
            # Killed as soon as the server said every device is notified: the relay is still sending.
            server.process.send_signal(signal.SIGKILL)
            server.process.wait()
            heard_before = sum(1 for sim in sims if sim.notices)
            print(f"{heard_before} of {DEVICES} devices had their notice when the server was killed")
            assert campaign["counts"] == {"notified": DEVICES}  # the 201 said every device was notified
        with running_server(data_dir, ports) as server, server.api() as api:
            # The devices reconnect by themselves and subscribe again; the relay sends what was left.
            wait_until(lambda: all(sim.notices for sim in sims), timeout=60, what="every device's notice")
            missed = [sim.topic_id for sim in sims if not sim.notices]
            assert missed == []
            for sim in sims:
                # A device whose notice was in flight at the crash may hear it twice: with the same id.
                assert len({n["id"] for n in sim.notices}) == 1
                assert {n["params"]["version"] for n in sim.notices} == {"2.0.0"}
            assert api.get(f"/campaigns/{campaign['id']}").json()["counts"] == {"notified": DEVICES}
    finally:
        with ThreadPoolExecutor(max_workers=50) as pool:
            list(pool.map(SimDevice.disconnect, sims))


def _gone(api: httpx.Client, sim: SimDevice) -> None:
    sim.client.disconnect()
    sim.client.loop_stop()
    wait_until(lambda: not api.get(f"/devices/{sim.device_id}").json()["online"], what="the device shown offline")


def _notified(api: httpx.Client, campaign: dict[str, Any]) -> dict[str, int]:
    return dict(api.get(f"/campaigns/{campaign['id']}").json()["counts"])


class TestANoticeTheDeviceNeverAnswered:
    def test_is_sent_again_on_its_next_connection_with_the_same_id(self, server: Server, api: httpx.Client) -> None:
        fleet = Fleet.create(api)
        device = fleet.device()
        first = SimDevice.token(server, device, client_id="rebooting").connect()
        campaign = fleet.campaign(fleet.package(firmware(500, seed=901), "2.0.0")["id"])
        wait_until(lambda: first.notices, what="the notice")
        # The device restarts before it acts on the notice (or its connection was already dying).
        _gone(api, first)
        again = SimDevice.token(server, device, client_id="rebooting").connect()
        wait_until(lambda: again.notices, what="the notice again")
        assert [n["id"] for n in again.notices] == [n["id"] for n in first.notices]
        assert again.notices[0]["params"]["version"] == "2.0.0"
        # Subscribing again on the connection that heard it sends nothing more.
        again.subscribe(f"/ota/device/upgrade/{again.topic_id}")
        time.sleep(1.5)
        assert len(again.notices) == 1
        assert _notified(api, campaign) == {"notified": 1}
        again.progress_002(100, "done")
        wait_until(lambda: _notified(api, campaign) == {"succeeded": 1}, what="the attempt to succeed")
        again.client.disconnect()

    def test_is_not_sent_again_once_the_device_answered_it(self, server: Server, api: httpx.Client) -> None:
        fleet = Fleet.create(api)
        device = fleet.device()
        first = SimDevice.token(server, device).connect()
        campaign = fleet.campaign(fleet.package(firmware(500, seed=902), "2.0.0")["id"])
        wait_until(lambda: first.notices, what="the notice")
        first.progress_002(30, "downloading")
        wait_until(lambda: _notified(api, campaign) == {"downloading": 1}, what="the download to show")
        _gone(api, first)
        again = SimDevice.token(server, device).connect()
        time.sleep(1.5)  # the relay runs at least once a second
        assert again.notices == []
        again.client.disconnect()
