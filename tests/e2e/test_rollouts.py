"""The rollout engine end to end: gates, staged groups, thresholds, offline devices, schedules, restarts."""

from __future__ import annotations

import signal
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from skylift_testkit import Fleet, Ports, Server, SimDevice, firmware, running_server, wait_until


@pytest.fixture
def fleet(api: httpx.Client) -> Fleet:
    return Fleet.create(api)


def online_devices(server: Server, fleet: Fleet, count: int, auto_step: int | None = None) -> list[SimDevice]:
    sims = []
    for _ in range(count):
        sim = SimDevice.token(server, fleet.device()).connect()
        sim.auto_step = auto_step
        sims.append(sim)
    return sims


def campaign_state(api: httpx.Client, campaign_id: int) -> dict[str, object]:
    return dict(api.get(f"/campaigns/{campaign_id}").json())


def disconnect_all(sims: list[SimDevice]) -> None:
    for sim in sims:
        sim.disconnect()


class TestVerificationGate:
    def test_refuses_until_a_verify_campaign_succeeded(self, server: Server, api: httpx.Client, fleet: Fleet) -> None:
        sims = online_devices(server, fleet, 3)
        package = fleet.package(firmware(1000, seed=50), "2.0.0", verify_required="true")
        assert package["verification"]["state"] == "unverified"

        refused = api.post("/campaigns", json={"name": "too early", "package_id": package["id"]})
        assert refused.status_code == 409
        assert "verification" in refused.json()["error"]["message"]

        first_device = _device_of(sims[0])
        verify_id = fleet.campaign(package["id"], type="verify", device_ids=[first_device])["id"]
        assert api.get(f"/packages/{package['id']}").json()["verification"]["state"] == "verifying"
        sims[0].notice()
        sims[0].progress_002(100)
        wait_until(lambda: campaign_state(api, verify_id)["state"] == "finished")
        verification = api.get(f"/packages/{package['id']}").json()["verification"]
        assert verification == {"state": "verified", "campaign_id": verify_id, "succeeded": 1, "targeted": 1}

        rollout = fleet.campaign(package["id"])
        assert rollout["targeted"] == 3
        disconnect_all(sims)


def fleet_ids(api: httpx.Client, fleet: Fleet) -> list[int]:
    return [d["id"] for d in api.get("/devices", params={"product_id": fleet.product_id}).json()["items"]]


class TestStagedRollout:
    def test_three_groups_advance_on_success_and_pause_on_failures(
        self, server: Server, api: httpx.Client, fleet: Fleet
    ) -> None:
        sims = online_devices(server, fleet, 30)
        devices = {_device_of(sim): sim for sim in sims}
        package = fleet.package(firmware(2000, seed=51), "3.0.0")
        campaign = fleet.campaign(
            package["id"],
            groups=[10, 50, 100],
            success_threshold=100,
            error_threshold={"percent": 50},
            min_finished=5,
        )
        cid = campaign["id"]
        groups = {row["device_id"]: row["group"] for row in fleet.attempts(cid).values()}
        assert sorted(list(groups.values()).count(g) for g in (0, 1, 2)) == [3, 12, 15]

        def in_group(group: int) -> list[SimDevice]:
            return [devices[device_id] for device_id, g in groups.items() if g == group]

        # Only the first group hears about the campaign.
        for sim in in_group(0):
            assert sim.notice()["params"]["version"] == "3.0.0"
        assert all(sim.no_message(0.1) for sim in in_group(1))
        # Group 1 succeeds: group 2 starts by itself.
        for sim in in_group(1):
            sim.auto_step = -1  # the second group's devices will fail
        for sim in in_group(0):
            sim.progress_002(100)
        wait_until(lambda: campaign_state(api, cid)["state"] == "paused", timeout=20, what="the campaign to pause")
        result = campaign_state(api, cid)
        assert result["current_group"] == 1
        assert "error threshold" in str(result["paused_reason"])
        # 3 succeeded, then failures until 50 % of at least 5 finished devices failed.
        counts = result["counts"]
        assert isinstance(counts, dict)
        assert counts["succeeded"] == 3
        assert counts["failed"] >= 3
        # The third group was never told anything.
        assert all(sim.notices == [] for sim in in_group(2))
        assert {fleet.attempts(cid)[d]["state"] for d, g in groups.items() if g == 2} == {"pending"}

        audit = api.get("/audit", params={"target_type": "campaign", "target_id": cid}).json()["items"]
        assert [event["action"] for event in audit] == ["campaign.create"]
        disconnect_all(sims)

    def test_approval_between_groups_and_operator_controls(
        self, server: Server, api: httpx.Client, fleet: Fleet
    ) -> None:
        sims = online_devices(server, fleet, 4, auto_step=100)
        package = fleet.package(firmware(500, seed=52), "1.1.0")
        cid = fleet.campaign(package["id"], groups=[50, 100], approval_required=True)["id"]
        wait_until(lambda: campaign_state(api, cid)["state"] == "paused", what="waiting for approval")
        assert "approval" in str(campaign_state(api, cid)["paused_reason"])
        assert api.post(f"/campaigns/{cid}/resume").status_code == 409

        approved = api.post(f"/campaigns/{cid}/approve")
        assert approved.status_code == 200
        assert approved.json()["current_group"] == 1
        wait_until(lambda: campaign_state(api, cid)["state"] == "finished", what="the campaign to finish")
        assert campaign_state(api, cid)["success_rate"] == 1.0
        assert api.post(f"/campaigns/{cid}/pause").status_code == 409

        events = api.get("/audit", params={"target_type": "campaign", "target_id": cid}).json()["items"]
        actions = [event["action"] for event in events]
        assert actions == ["campaign.approve", "campaign.create"]
        results = api.get(f"/campaigns/{cid}/results").json()
        assert results["versions_after"] == {}  # the devices never reported a version
        assert sum(point["succeeded"] for point in results["timeline"]) == 4
        disconnect_all(sims)


class TestBootReportsCrossingTheNotice:
    ROUNDS = 20

    def test_staged_rollouts_right_after_boot_reports_never_fail_spuriously(
        self, server: Server, api: httpx.Client
    ) -> None:
        # Devices that report their version as they connect, a staged campaign seconds later: a boot
        # report applied after the notice must never fail a device (any failure would pause the campaign).
        for round_number in range(self.ROUNDS):
            fleet = Fleet.create(api)
            sims = []
            for _ in range(10):
                sim = SimDevice.product_key(server, fleet.device()).connect()
                sim.auto_step, sim.auto_inform = 100, True
                sim.publish(f"/ota/device/inform/{sim.topic_id}", {"id": 1, "params": {"version": "1.0.0"}})
                sims.append(sim)
            package = fleet.package(firmware(300, seed=700 + round_number), "1.1.0")
            cid = fleet.campaign(
                package["id"], groups=[20, 100], error_threshold={"count": 1}, min_finished=1, on_error="abort"
            )["id"]
            wait_until(
                lambda cid=cid: campaign_state(api, cid)["state"] != "running",
                timeout=30,
                what=f"round {round_number} to end",
            )
            result = campaign_state(api, cid)
            assert (result["state"], result["counts"]) == ("finished", {"succeeded": 10}), result
            disconnect_all(sims)


class TestOfflineDevices:
    def test_failed_as_offline_by_default(self, api: httpx.Client, fleet: Fleet) -> None:
        device = fleet.device()
        cid = fleet.campaign(fleet.package(firmware(100, seed=53), "1.0.1")["id"])["id"]
        assert fleet.attempts(cid)[device["id"]]["failure_reason"] == "offline"

    def test_delivered_when_the_device_connects(self, server: Server, api: httpx.Client, fleet: Fleet) -> None:
        device = fleet.device()
        cid = fleet.campaign(fleet.package(firmware(100, seed=54), "1.0.2")["id"], offline="deliver_on_connect")["id"]
        assert fleet.attempts(cid)[device["id"]]["state"] == "pending"
        assert campaign_state(api, cid)["state"] == "running"
        sim = SimDevice.token(server, device).connect()
        assert sim.notice()["params"]["version"] == "1.0.2"
        fleet.wait_state(cid, device["id"], "notified")
        sim.disconnect()


class TestTimeoutsAndRetries:
    def test_a_silent_device_times_out(self, server: Server, api: httpx.Client, fleet: Fleet) -> None:
        sims = online_devices(server, fleet, 1)
        cid = fleet.campaign(fleet.package(firmware(100, seed=55), "1.0.3")["id"], timeout_minutes=0.05)["id"]
        sims[0].notice()
        device_id = fleet_ids(api, fleet)[0]
        attempt = fleet.wait_state(cid, device_id, "failed", timeout=15)
        assert attempt["failure_reason"] == "timeout"
        disconnect_all(sims)

    def test_automatic_retry_after_a_failure(self, server: Server, api: httpx.Client, fleet: Fleet) -> None:
        sims = online_devices(server, fleet, 1)
        cid = fleet.campaign(
            fleet.package(firmware(100, seed=56), "1.0.4")["id"], retry_count=1, retry_interval_minutes=0
        )["id"]
        sims[0].notice()
        sims[0].progress_002(-4, "flash write error")
        second = sims[0].notice()
        assert second["params"]["version"] == "1.0.4"
        sims[0].progress_002(100)
        attempt = fleet.wait_state(cid, fleet_ids(api, fleet)[0], "succeeded")
        assert attempt["attempts"] == 2
        disconnect_all(sims)


class TestTargets:
    def test_tags_percent_source_versions_and_skips(self, server: Server, api: httpx.Client, fleet: Fleet) -> None:
        tagged = [fleet.device() for _ in range(3)]
        for device in tagged[:2]:
            assert api.patch(f"/devices/{device['id']}", json={"tags": ["beta", "eu"]}).status_code == 200
        sims = [SimDevice.token(server, d).connect() for d in tagged]
        sims[0].inform("1.0.0")
        sims[1].inform("2.0.0")
        wait_until(lambda: len(api.get(f"/products/{fleet.product_id}/versions").json()["versions"]) == 2)
        package = fleet.package(firmware(100, seed=57), "2.0.0")

        by_tag = fleet.campaign(package["id"], target={"tags": ["beta"]})
        assert by_tag["counts"] == {"notified": 1, "skipped": 1}  # the device already on 2.0.0 is skipped
        assert by_tag["targeted"] == 1

        by_version = api.post(
            "/campaigns",
            json={"name": "v", "package_id": package["id"], "target": {"all": True}, "source_versions": ["1.5.0"]},
        )
        assert by_version.status_code == 422
        assert by_version.json()["error"]["field"] == "target"

        body = {"name": "x", "package_id": package["id"], "device_ids": [1], "target": {"all": True}}
        both = api.post("/campaigns", json=body)
        assert both.status_code == 422
        disconnect_all(sims)

    def test_a_percent_picks_the_same_devices_again(self, api: httpx.Client, fleet: Fleet) -> None:
        for _ in range(40):
            fleet.device()
        package = fleet.package(firmware(100, seed=58), "5.0.0")
        first = set(fleet.attempts(fleet.campaign(package["id"], target={"percent": 30})["id"]))
        second = set(fleet.attempts(fleet.campaign(package["id"], target={"percent": 30})["id"]))
        wider = set(fleet.attempts(fleet.campaign(package["id"], target={"percent": 60})["id"]))
        assert first == second
        assert first < wider
        assert 4 <= len(first) <= 20


class TestDynamicAndScheduled:
    def test_a_dynamic_campaign_catches_a_new_device(self, server: Server, api: httpx.Client, fleet: Fleet) -> None:
        package = fleet.package(firmware(100, seed=59), "6.0.0")
        cid = fleet.campaign(package["id"], mode="dynamic", offline="deliver_on_connect")["id"]
        assert campaign_state(api, cid)["state"] == "running"
        late = fleet.device()
        sim = SimDevice.token(server, late).connect()
        assert sim.notice()["params"]["version"] == "6.0.0"
        assert late["id"] in fleet.attempts(cid)
        sim.disconnect()

    def test_a_scheduled_campaign_starts_at_its_time(self, server: Server, api: httpx.Client, fleet: Fleet) -> None:
        sims = online_devices(server, fleet, 1)
        start = datetime.now(UTC) + timedelta(seconds=3)
        package = fleet.package(firmware(100, seed=60), "7.0.0")
        campaign = fleet.campaign(package["id"], schedule={"start_at": start.isoformat()})
        assert campaign["state"] == "scheduled"
        assert sims[0].no_message(1.0)
        notice = sims[0].notice(timeout=10)
        assert datetime.now(UTC) >= start
        assert notice["params"]["version"] == "7.0.0"
        assert campaign_state(api, campaign["id"])["state"] == "running"
        disconnect_all(sims)

    def test_pacing_limits_notices_per_minute(self, server: Server, api: httpx.Client, fleet: Fleet) -> None:
        sims = online_devices(server, fleet, 5)
        cid = fleet.campaign(fleet.package(firmware(100, seed=61), "8.0.0")["id"], max_per_minute=2)["id"]
        wait_until(lambda: campaign_state(api, cid)["counts"] == {"notified": 2, "pending": 3})
        wait_until(lambda: sum(len(sim.notices) for sim in sims) == 2)
        # Engine ticks go on (one a second); within the same minute no third notice may leave.
        with pytest.raises(AssertionError, match="timed out"):
            wait_until(lambda: sum(len(sim.notices) for sim in sims) > 2, timeout=2.5)
        assert campaign_state(api, cid)["counts"] == {"notified": 2, "pending": 3}
        disconnect_all(sims)


@pytest.fixture
def own_server(tmp_path: Path) -> tuple[Path, Ports]:
    return tmp_path / "data", Ports()


class TestRestart:
    def test_kill_mid_rollout_and_restart_loses_nothing(self, own_server: tuple[Path, Ports]) -> None:
        data_dir, ports = own_server
        with running_server(data_dir, ports) as server, server.api() as api:
            fleet = Fleet.create(api)
            sims = online_devices(server, fleet, 6)
            cid = fleet.campaign(fleet.package(firmware(3000, seed=62), "9.0.0")["id"], groups=[50, 100])["id"]
            wait_until(lambda: sum(len(s.notices) for s in sims) == 3, what="the first group's notices")
            first_group = [s for s in sims if s.notices]
            first_group[0].progress_002(100)
            fleet.wait_state(cid, _device_of(first_group[0]), "succeeded")
            server.process.send_signal(signal.SIGKILL)
            server.process.wait()
        with running_server(data_dir, ports) as server, server.api() as api:
            fleet = Fleet(api=api, product=api.get(f"/products/{fleet.product_id}").json())
            # Generous waits: under a shifted clock on a loaded machine the restart alone can take seconds.
            wait_until(lambda: all(s.connected for s in sims), timeout=60, what="devices to reconnect")
            for sim in sims:
                sim.auto_step = 100
            for sim in first_group[1:]:
                sim.progress_002(100)
            wait_until(
                lambda: campaign_state(api, cid)["state"] == "finished", timeout=60, what="the rollout to finish"
            )
            assert campaign_state(api, cid)["counts"] == {"succeeded": 6}
            # Every device heard its notice, under one id: none was lost. Only a device that had not
            # answered its notice when the server died may hear it again (its connection died with it).
            assert [len({n["id"] for n in s.notices}) for s in sims] == [1] * 6
            assert [len(s.notices) for s in sims if s not in first_group[1:]] == [1] * 4
            disconnect_all(sims)


def _device_of(sim: SimDevice) -> int:
    assert sim.device_id is not None
    return sim.device_id
