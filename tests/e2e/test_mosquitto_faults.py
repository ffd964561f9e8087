"""Skylift on an external Mosquitto when a process dies: Skylift killed (kill -9) while devices report,
and Mosquitto killed while devices and Skylift are connected to it."""

from __future__ import annotations

import signal
from pathlib import Path

from mosquitto_kit import broker_settings, mosquitto_for_skylift, plugin_file, running_mosquitto  # noqa: F401
from reports_kit import Acks, connected, notify
from skylift_testkit import Fleet, firmware, running_server, wait_until

STEPS = list(range(5, 101, 5))


class TestSkyliftKilled:
    def test_what_mosquitto_took_while_skylift_died_and_was_away_is_applied(
        self,
        tmp_path: Path,
        plugin_file: Path,  # noqa: F811
    ) -> None:
        with mosquitto_for_skylift(tmp_path / "mosquitto", plugin_file) as (broker, ports):
            env = broker_settings(broker)
            with running_server(tmp_path / "data", ports, **env) as server, server.api() as api:
                fleet = Fleet.create(api)
                sims = connected(server, fleet, 20)
                campaign_id = notify(fleet, sims, seed=190)
                acks = {device_id: Acks(sim) for device_id, sim in sims.items()}
                for step in STEPS[: len(STEPS) // 2]:
                    for ack in acks.values():
                        ack.send({"step": str(step), "desc": f"s{step}"}, step)
                wait_until(lambda: sum(len(a.acknowledged()) for a in acks.values()) >= 100, what="100 PUBACKs")
                server.process.send_signal(signal.SIGKILL)
                server.process.wait()
            # Skylift is gone; the devices are still connected to Mosquitto, which takes the rest.
            for step in STEPS[len(STEPS) // 2 :]:
                for ack in acks.values():
                    ack.send({"step": str(step), "desc": f"s{step}"}, step)
            total = len(STEPS) * len(acks)
            wait_until(lambda: sum(len(a.acknowledged()) for a in acks.values()) == total, what="every PUBACK")

            with running_server(tmp_path / "data", ports, **env) as server, server.api() as api:
                fleet = Fleet(api=api, product=fleet.product)
                wait_until(
                    lambda: all(a["state"] == "succeeded" for a in fleet.attempts(campaign_id).values()),
                    timeout=60,
                    what="every device's step 100 to be applied",
                )
                # The devices never reconnected: the restarted Skylift learnt from Mosquitto that they
                # are connected and listening, and a new campaign reaches each of them.
                for device_id in sims:
                    wait_until(lambda d=device_id: api.get(f"/devices/{d}").json()["online"], what="online")
                fleet.campaign(fleet.package(firmware(700, seed=191), "3.0.0")["id"])
                wait_until(lambda: all(len(sim.notices) == 2 for sim in sims.values()), timeout=30, what="every notice")
                for sim in sims.values():
                    sim.disconnect()


class TestMosquittoKilled:
    def test_devices_that_come_back_hear_their_notices_and_the_others_are_offline(
        self,
        tmp_path: Path,
        plugin_file: Path,  # noqa: F811
    ) -> None:
        mosquitto_dir = tmp_path / "mosquitto"
        with mosquitto_for_skylift(mosquitto_dir, plugin_file) as (broker, ports):
            with running_server(tmp_path / "data", ports, **broker_settings(broker)) as server, server.api() as api:
                fleet = Fleet.create(api)
                sims = connected(server, fleet, 6)
                staying, leaving = dict(list(sims.items())[:4]), dict(list(sims.items())[4:])
                for sim in leaving.values():
                    sim.client.loop_stop()  # these will not come back
                broker.kill()
                with running_mosquitto(mosquitto_dir, plugin_file, ports.http, port=broker.port):
                    # paho brings the others back (and they subscribe again); Skylift's link comes back too.
                    wait_until(lambda: all(sim.connected for sim in staying.values()), timeout=30, what="reconnects")
                    for device_id in leaving:
                        wait_until(lambda d=device_id: not api.get(f"/devices/{d}").json()["online"], what="offline")
                    campaign_id = notify(fleet, staying, seed=192)
                    attempts = fleet.attempts(campaign_id)
                    assert {attempts[d]["state"] for d in staying} == {"notified"}
                    assert {attempts[d]["state"] for d in leaving} != {"notified"}
                    for sim in staying.values():
                        sim.disconnect()
