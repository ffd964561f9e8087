"""Nothing a device was acknowledged is lost: a kill -9 keeps it, a flood is slowed down, never dropped."""

from __future__ import annotations

import re
import signal
import time
from pathlib import Path

import httpx
import pytest

from reports_kit import Acks, behind, connected, notify, silenced
from skylift_testkit import Fleet, Ports, Server, running_server, wait_until

STEPS = list(range(5, 101, 5))


def metric(server: Server, name: str) -> float:
    text = httpx.get(f"{server.http_url}/metrics").text
    return sum(float(v) for v in re.findall(rf"^{re.escape(name)}(?:{{[^}}]*}})? (\S+)$", text, re.M))


def settled(server: Server, name: str) -> float:
    """A counter once it has stopped moving (what earlier tests sent may still be being applied)."""
    value = metric(server, name)
    while True:
        time.sleep(0.5)
        again = metric(server, name)
        if again == value:
            return value
        value = again


@pytest.fixture
def own_server(tmp_path: Path) -> tuple[Path, Ports]:
    return tmp_path / "data", Ports()


class TestKillDuringBursts:
    # Killed once this many of the 50 x 20 reports are acknowledged: mid-stream, or all (most not applied yet).
    @pytest.mark.parametrize("acknowledged", [250, 1000])
    def test_every_acknowledged_report_survives_a_kill(self, own_server: tuple[Path, Ports], acknowledged: int) -> None:
        data_dir, ports = own_server
        with running_server(data_dir, ports) as server, server.api() as api:
            fleet = Fleet.create(api)
            sims = connected(server, fleet, 50)
            campaign_id = notify(fleet, sims, seed=90)
            acks = {device_id: Acks(sim) for device_id, sim in sims.items()}
            for step in STEPS:
                for ack in acks.values():
                    ack.send({"step": str(step), "desc": f"s{step}"}, step)
            wait_until(
                lambda: sum(len(ack.acknowledged()) for ack in acks.values()) >= acknowledged,
                timeout=30,
                interval=0.005,
                what=f"{acknowledged} PUBACKs",
            )
            server.process.send_signal(signal.SIGKILL)
            server.process.wait()
        highest = silenced(acks)

        with running_server(data_dir, ports) as server, server.api() as api:
            fleet = Fleet(api=api, product=fleet.product)

            # Up to 1,000 reports to replay: generous for a loaded machine under the shifted-date run.
            wait_until(
                lambda: not behind(fleet, campaign_id, highest),
                timeout=90,
                what="every acknowledged report to be applied",
            )
            attempts = fleet.attempts(campaign_id)
            for device_id, step in highest.items():
                if step == 100:
                    assert attempts[device_id]["state"] == "succeeded"


class TestFlood:
    def test_a_flood_is_slowed_not_dropped_and_others_stay_quick(self, server: Server, api: httpx.Client) -> None:
        count = 5000
        fleet = Fleet.create(api)
        # The flooder does not wait for its PUBACKs (an in-flight window as large as the flood).
        ((flooder_id, flooder),) = connected(server, fleet, 1, inflight=count).items()
        ((quiet_id, quiet),) = connected(server, fleet, 1).items()
        sims = {flooder_id: flooder, quiet_id: quiet}
        campaign_id = notify(fleet, sims, seed=91)
        applied_before = metric(server, "skylift_device_messages_applied_total")
        refused_before = metric(server, "skylift_device_refused_messages_total")
        paused_before = metric(server, "skylift_device_reads_paused_total")

        flood = Acks(flooder)
        for index in range(count):
            flood.send({"step": str(1 + index % 99), "desc": f"m{index}"}, index)

        latencies = []
        for report in range(15):
            sent = time.monotonic()
            quiet.progress_002(50, f"q{report}")
            wait_until(
                lambda report=report: fleet.attempts(campaign_id)[quiet_id]["step_desc"] == f"q{report}",
                timeout=10,
                interval=0.02,
                what="the quiet device's report",
            )
            latencies.append(time.monotonic() - sent)
            time.sleep(0.1)
        assert len(flood.acknowledged()) < count, "the flood was over before the quiet device was measured"
        # Quick next to a flood that takes the inbox many seconds to work through (the bound leaves
        # room for the slower shifted-date run).
        assert max(latencies) < 5.0, latencies

        wait_until(lambda: len(flood.acknowledged()) == count, timeout=180, what="every PUBACK of the flood")
        wait_until(
            lambda: fleet.attempts(campaign_id)[flooder_id]["step_desc"] == f"m{count - 1}",
            timeout=60,
            what="the flood's last report",
        )
        # Each one was applied, in order (the last one last), and none was refused or dropped.
        wait_until(
            lambda: metric(server, "skylift_device_messages_applied_total") - applied_before >= count + len(latencies),
            what="the applied count",
        )
        assert metric(server, "skylift_device_refused_messages_total") == refused_before
        # The flooder was held back by its connection, not by dropping what it sent.
        assert metric(server, "skylift_device_reads_paused_total") > paused_before
        assert flooder.connected
        for sim in sims.values():
            sim.disconnect()


class TestRefused:
    def test_refused_messages_are_acknowledged_counted_and_never_recorded(
        self, server: Server, api: httpx.Client
    ) -> None:
        fleet = Fleet.create(api)
        ((device_id, sim), (other_id, other)) = connected(server, fleet, 2).items()
        campaign_id = notify(fleet, {device_id: sim, other_id: other}, seed=92)
        refused_before = metric(server, "skylift_device_refused_messages_total")
        applied_before = settled(server, "skylift_device_messages_applied_total")

        # Each publish waits for its PUBACK: a refusal is acknowledged too, so the device goes on.
        sim.publish(f"/ota/device/progress/{sim.topic_id}", b'{"step": "5", "desc": "' + b"x" * 70_000 + b'"}')
        sim.publish(f"/ota/device/progress/{other.topic_id}", {"step": "60", "desc": "not mine"})
        sim.progress_002(30, "mine")

        fleet.wait_state(campaign_id, device_id, "downloading")
        assert metric(server, "skylift_device_refused_messages_total") - refused_before == 2
        applied = wait_until(lambda: metric(server, "skylift_device_messages_applied_total") - applied_before)
        assert applied == 1
        attempts = fleet.attempts(campaign_id)
        assert (attempts[device_id]["progress"], attempts[device_id]["step_desc"]) == (30, "mine")
        assert attempts[other_id]["state"] == "notified"
        sim.disconnect()
        other.disconnect()
