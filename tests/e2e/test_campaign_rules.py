"""What keeps a rollout safe: diff packages, disabling a package, one attempt per module, why a campaign waits."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from skylift_testkit import Fleet, Server, SimDevice, firmware, wait_until


@pytest.fixture
def fleet(api: httpx.Client) -> Fleet:
    return Fleet.create(api)


def online(server: Server, fleet: Fleet, version: str | None = None) -> tuple[dict[str, Any], SimDevice]:
    device = fleet.device()
    sim = SimDevice.token(server, device).connect()
    # A campaign created before the server has seen the connection would find the device offline.
    wait_until(lambda: fleet.api.get(f"/devices/{device['id']}").json()["online"], what="the device to be online")
    if version is not None:
        sim.inform(version)
        wait_until(
            lambda: fleet.api.get(f"/devices/{device['id']}").json()["versions"].get("default") == version,
            what=f"the version report {version}",
        )
    return device, sim


def campaign(api: httpx.Client, campaign_id: int) -> dict[str, Any]:
    return dict(api.get(f"/campaigns/{campaign_id}").json())


class TestDiffPackages:
    def test_only_devices_on_a_source_version_get_it_and_the_notice_says_diff(
        self, server: Server, fleet: Fleet
    ) -> None:
        on_source, sim_source = online(server, fleet, "1.0.0")
        on_other_source, sim_other = online(server, fleet, "v1.0.1")
        too_old, sim_old = online(server, fleet, "0.9.0")
        too_new, sim_new = online(server, fleet, "2.0.0")
        package = fleet.package(firmware(300, seed=70), "1.1.0", type="diff", source_version="1.0.0, 1.0.1")
        assert package["source_versions"] == ["1.0.0", "1.0.1"]

        cid = fleet.campaign(package["id"])["id"]
        for sim in (sim_source, sim_other):
            params = sim.notice()["params"]
            assert params["isDiff"] == 1
            assert params["version"] == "1.1.0"
        attempts = fleet.attempts(cid)
        for device in (too_old, too_new):
            assert attempts[device["id"]]["state"] == "skipped"
            assert attempts[device["id"]]["step_desc"] == "not on a source version"
        assert {attempts[d["id"]]["state"] for d in (on_source, on_other_source)} == {"notified"}
        assert sim_old.no_message(0.5)
        assert sim_new.no_message(0.1)
        for sim in (sim_source, sim_other, sim_old, sim_new):
            sim.disconnect()

    def test_a_full_package_says_nothing_about_diffs(self, server: Server, fleet: Fleet) -> None:
        _, sim = online(server, fleet, "1.0.0")
        fleet.campaign(fleet.package(firmware(300, seed=71), "1.1.0")["id"])
        assert "isDiff" not in sim.notice()["params"]
        sim.disconnect()


class TestDisablingAPackage:
    def test_stops_the_rollout_until_enabled_and_resumed(self, server: Server, api: httpx.Client, fleet: Fleet) -> None:
        first, sim_first = online(server, fleet)
        second, sim_second = online(server, fleet)
        package = fleet.package(firmware(400, seed=72), "3.0.0")
        # One notice a minute: the second device is still pending when the package is disabled.
        cid = fleet.campaign(package["id"], max_per_minute=1)["id"]
        wait_until(lambda: campaign(api, cid)["counts"].get("notified") == 1, what="the first notice")
        wait_until(lambda: any(not s.messages.empty() for s in (sim_first, sim_second)), what="a notice")
        heard, waiting = (sim_first, sim_second) if not sim_first.messages.empty() else (sim_second, sim_first)
        url = heard.notice()["params"]["url"]
        assert httpx.get(url).status_code == 200

        off = api.patch(f"/packages/{package['id']}", json={"enabled": False})
        assert off.status_code == 200, off.text
        state = campaign(api, cid)
        assert (state["state"], state["paused_reason"]) == ("paused", "package disabled")
        assert state["waiting_reason"] == "package disabled"
        gone = httpx.get(url)
        assert gone.status_code == 410
        assert gone.json()["error"]["code"] == "gone"
        # Well past the pacing minute, nothing goes out.
        assert waiting.no_message(2.0)
        refused = api.post(f"/campaigns/{cid}/resume")
        assert refused.status_code == 409
        assert "disabled" in refused.json()["error"]["message"]

        assert api.patch(f"/packages/{package['id']}", json={"enabled": True}).status_code == 200
        assert campaign(api, cid)["state"] == "paused"  # an operator decides when it goes on
        assert httpx.get(url).status_code == 200
        assert api.post(f"/campaigns/{cid}/resume").json()["state"] == "running"
        sim_first.disconnect()
        sim_second.disconnect()
        assert {first["id"], second["id"]} == set(fleet.attempts(cid))


class TestOneOpenAttemptPerModule:
    def test_a_busy_device_is_skipped_or_superseded(self, server: Server, api: httpx.Client, fleet: Fleet) -> None:
        device, sim = online(server, fleet, "1.0.0")
        first = fleet.campaign(fleet.package(firmware(300, seed=73), "1.1.0")["id"])["id"]
        assert sim.notice()["params"]["version"] == "1.1.0"

        second = fleet.campaign(fleet.package(firmware(300, seed=74), "1.2.0")["id"], mode="dynamic")["id"]
        attempt = fleet.attempts(second).get(device["id"])
        # A dynamic campaign leaves a busy device for later; a static one records why it skipped it.
        assert attempt is None
        third_package = fleet.package(firmware(300, seed=75), "1.3.0")
        skipped = fleet.attempts(fleet.campaign(third_package["id"])["id"])[device["id"]]
        assert (skipped["state"], skipped["step_desc"]) == ("skipped", f"busy in campaign {first}")
        assert sim.no_message(0.5)

        superseding = fleet.campaign(third_package["id"], supersede=True)["id"]
        old = fleet.attempts(first)[device["id"]]
        assert (old["state"], old["step_desc"]) == ("canceled", f"superseded by campaign {superseding}")
        assert sim.notice()["params"]["version"] == "1.3.0"
        open_states = {"pending", "notified", "downloading", "upgrading"}
        open_attempts = [
            cid
            for cid in (first, second, superseding)
            if fleet.attempts(cid).get(device["id"], {}).get("state") in open_states
        ]
        assert open_attempts == [superseding]
        sim.disconnect()

    def test_a_superseded_notice_that_waited_for_its_device_never_goes_out(
        self, server: Server, api: httpx.Client, fleet: Fleet
    ) -> None:
        device = fleet.device()
        # Connected, but not yet subscribed to its upgrade topic: a notice decided now waits for it.
        sim = SimDevice.token(server, device).connect(subscribe=False)
        wait_until(lambda: api.get(f"/devices/{device['id']}").json()["online"], what="the device to be online")
        old = fleet.campaign(fleet.package(firmware(300, seed=76), "2.1.0")["id"])["id"]
        assert fleet.attempts(old)[device["id"]]["state"] == "notified"
        new = fleet.campaign(fleet.package(firmware(300, seed=77), "2.2.0")["id"], supersede=True)["id"]
        assert fleet.attempts(old)[device["id"]]["state"] == "canceled"
        sim.subscribe(f"/ota/device/upgrade/{sim.topic_id}")
        assert sim.notice()["params"]["version"] == "2.2.0"
        assert sim.no_message(1.5)
        assert fleet.attempts(new)[device["id"]]["state"] == "notified"
        sim.disconnect()


class TestWhyACampaignWaits:
    def test_its_start_time(self, api: httpx.Client, fleet: Fleet) -> None:
        fleet.device()
        start = (datetime.now(UTC) + timedelta(days=2)).replace(microsecond=0)
        created = fleet.campaign(
            fleet.package(firmware(100, seed=78), "1.0.1")["id"], schedule={"start_at": start.isoformat()}
        )
        assert created["state"] == "scheduled"
        assert created["waiting_reason"] == "waiting for its start time"
        assert datetime.fromisoformat(created["next_run_at"]) == start

    def test_its_window(self, server: Server, api: httpx.Client, fleet: Fleet) -> None:
        _, sim = online(server, fleet)
        now = datetime.now(UTC)
        # A window that opens two hours from now, whatever the time of day.
        opens, closes = now + timedelta(hours=2), now + timedelta(hours=3)
        window = {"start": f"{opens:%H:%M}", "end": f"{closes:%H:%M}", "tz": "UTC"}
        created = fleet.campaign(fleet.package(firmware(100, seed=79), "1.0.2")["id"], schedule={"window": window})
        assert created["waiting_reason"].startswith("outside its window")
        next_run = datetime.fromisoformat(created["next_run_at"])
        assert timedelta(hours=1, minutes=58) < next_run - now <= timedelta(hours=2)
        assert sim.no_message(0.5)
        sim.disconnect()

    def test_its_pacing(self, server: Server, api: httpx.Client, fleet: Fleet) -> None:
        sims = [online(server, fleet)[1] for _ in range(2)]
        cid = fleet.campaign(fleet.package(firmware(100, seed=80), "1.0.3")["id"], max_per_minute=1)["id"]
        state = wait_until(lambda: (c := campaign(api, cid))["waiting_reason"] and c, what="a waiting reason")
        assert state["waiting_reason"] == "pacing: at most 1 notices a minute"
        assert timedelta(0) < datetime.fromisoformat(state["next_run_at"]) - datetime.now(UTC) <= timedelta(minutes=1)
        for sim in sims:
            sim.disconnect()

    def test_an_approval(self, server: Server, api: httpx.Client, fleet: Fleet) -> None:
        sims = [online(server, fleet)[1] for _ in range(2)]
        for sim in sims:
            sim.auto_step = 100
        cid = fleet.campaign(
            fleet.package(firmware(100, seed=81), "1.0.4")["id"], groups=[50, 100], approval_required=True
        )["id"]
        state = wait_until(lambda: (c := campaign(api, cid))["state"] == "paused" and c, what="the approval wait")
        assert state["waiting_reason"].startswith("waiting for approval")
        for sim in sims:
            sim.disconnect()


class TestCron:
    def test_five_fields_only(self, api: httpx.Client, fleet: Fleet) -> None:
        fleet.device()
        package = fleet.package(firmware(100, seed=82), "1.0.5")
        six = api.post(
            "/campaigns", json={"name": "six", "package_id": package["id"], "schedule": {"cron": "0 0 2 * * *"}}
        )
        assert six.status_code == 422
        assert "seconds are not supported" in six.json()["error"]["message"]
        five = fleet.campaign(package["id"], schedule={"cron": "0 2 * * *"})
        assert five["waiting_reason"] == "waiting for its next scheduled run"
        assert datetime.fromisoformat(five["next_run_at"]).strftime("%H:%M") == "02:00"
