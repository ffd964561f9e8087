"""Device credentials at rest and in answers: sealed in the database, owner-only files, shown only
when they are issued or asked for (and then audited)."""

from __future__ import annotations

import stat
from pathlib import Path
from typing import Any

import httpx
import pytest

from dialects_kit import EztDevice
from skylift.kit import sealing
from skylift_testkit import TEST_DATABASE_URL, Fleet, Ports, Server, SimDevice, firmware, running_server, wait_until

CREDENTIALS = ("access_token", "device_secret")


def _files(data_dir: Path) -> list[Path]:
    return [path for path in data_dir.rglob("*") if path.is_file()]


class TestDatabaseFiles:
    def test_no_credential_is_written_in_clear(self, tmp_path: Path) -> None:
        data_dir = tmp_path / "data"
        with running_server(data_dir) as server, server.api() as api:
            fleet = Fleet.create(api)
            token_device, key_device, ezt_device = fleet.device(), fleet.device(), fleet.device()
            secrets = [device[name] for device in (token_device, key_device, ezt_device) for name in CREDENTIALS]
            package = fleet.package(firmware(3000, seed=91), "2.0.0")
            token_sim = SimDevice.token(server, token_device).connect()
            key_sim = SimDevice.product_key(server, key_device).connect()
            # An EZtCloud device subscribes on `command_send/{its token}`: the channel is kept for the relay.
            ezt = EztDevice(server, ezt_device).connect()
            ezt.publish("attributes", {"version": "1.0.0"})
            token_sim.inform("1.0.0")
            key_sim.inform("1.0.0")
            campaign = fleet.campaign(package["id"], device_ids=[token_device["id"], key_device["id"]])
            token_sim.notice()
            key_sim.notice()
            for step in (10, 50, 100):  # through the device inbox, whose topics carry the token
                token_sim.progress_002(step)
            key_sim.progress_004(100)
            key_sim.inform("2.0.0")
            fleet.wait_state(campaign["id"], token_device["id"], "succeeded")
            fleet.wait_state(campaign["id"], key_device["id"], "succeeded")
            for sim in (token_sim, key_sim, ezt.sim):
                sim.disconnect()
            leaked = {path.name: [s for s in secrets if s.encode() in path.read_bytes()] for path in _files(data_dir)}
        assert _files(data_dir), "the server wrote no files"
        assert {name: found for name, found in leaked.items() if found} == {}

    def test_the_data_dir_is_the_owners_alone(self, tmp_path: Path) -> None:
        data_dir = tmp_path / "data"
        data_dir.mkdir(mode=0o755)
        (data_dir / "secret-key").write_text("kept by an older version, readable by all\n")
        (data_dir / "secret-key").chmod(0o644)
        with running_server(data_dir) as server, server.api() as api:
            Fleet.create(api).device()
            modes = {path.name: stat.S_IMODE(path.stat().st_mode) for path in data_dir.iterdir() if path.is_file()}
            assert stat.S_IMODE(data_dir.stat().st_mode) == 0o700
        kept = {"secret-key", "credentials-key"} | (set() if TEST_DATABASE_URL else {"skylift.db"})
        assert kept <= set(modes)
        assert {name: mode for name, mode in modes.items() if mode & 0o077} == {}


class TestAnswers:
    def test_lists_and_reads_carry_no_credentials(self, api: httpx.Client) -> None:
        fleet = Fleet.create(api)
        device = fleet.device()
        assert set(CREDENTIALS) <= set(device)  # issued once, at creation
        listed = api.get("/devices", params={"product_id": fleet.product_id}).json()["items"]
        read = api.get(f"/devices/{device['id']}").json()
        for answer in (*listed, read):
            assert not set(CREDENTIALS) & set(answer)
            assert device["access_token"] not in str(answer)
            assert device["device_secret"] not in str(answer)

    def test_credentials_on_request_are_audited(self, api: httpx.Client) -> None:
        fleet = Fleet.create(api)
        device = fleet.device()
        answer = api.get(f"/devices/{device['id']}/credentials")
        assert answer.status_code == 200, answer.text
        assert answer.json() == {
            "device_id": device["id"],
            "product_key": fleet.product_key,
            "device_name": device["name"],
            "access_token": device["access_token"],
            "device_secret": device["device_secret"],
            "mqtt_username": f"{device['name']}&{fleet.product_key}",
        }
        entries = api.get("/audit").json()["items"]
        assert any(e["action"] == "device.read_credentials" and e["target_id"] == device["id"] for e in entries)

    def test_rotation_answers_the_new_credentials_once(self, server: Server, api: httpx.Client) -> None:
        fleet = Fleet.create(api)
        device = fleet.device()
        rotated: dict[str, Any] = api.post(f"/devices/{device['id']}/credentials").json()
        assert all(rotated[name] != device[name] for name in CREDENTIALS)
        assert api.get(f"/devices/{device['id']}/credentials").json()["access_token"] == rotated["access_token"]
        sim = SimDevice.token(server, rotated).connect()
        sim.inform("1.2.3")
        wait_until(lambda: api.get(f"/devices/{device['id']}").json()["versions"] == {"default": "1.2.3"})
        sim.disconnect()
        assert SimDevice.token(server, device).try_connect().is_failure


class TestKeyChange:
    def test_a_new_key_first_reseals_and_then_the_old_one_can_go(self, tmp_path: Path) -> None:
        old, new = sealing.new_key(), sealing.new_key()
        ports = Ports()
        with running_server(tmp_path / "data", ports, SKYLIFT_CREDENTIALS_KEY=old) as server, server.api() as api:
            device = Fleet.create(api).device()
        for keys in (f"{new},{old}", new):
            with running_server(tmp_path / "data", ports, SKYLIFT_CREDENTIALS_KEY=keys) as server:
                sim = SimDevice.token(server, device)
                assert not sim.try_connect().is_failure, keys
                sim.disconnect()
                key_sim = SimDevice.product_key(server, device)
                assert not key_sim.try_connect().is_failure, keys
                key_sim.disconnect()
        # Sealed under the new key now: the old one alone is refused at start, with the reason.
        with (
            pytest.raises(AssertionError, match="does not open the stored device credentials"),
            running_server(tmp_path / "data", ports, SKYLIFT_CREDENTIALS_KEY=old),
        ):
            pass
