"""Nothing shown as notified is lost: kill -9 while notices go out, restart, every device hears its notice."""

from __future__ import annotations

import signal
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from skylift_testkit import Fleet, Ports, SimDevice, firmware, running_server, wait_until

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
