"""Replicas: two Skylift processes on one PostgreSQL database and one data dir, each with its own broker.

Each device hears its notices from the replica it is connected to, once; a replica killed with kill -9 is
taken over by the other (its devices offline, every report it acknowledged applied); revoking a device's
credentials on one replica closes its connection on the other.
"""

from __future__ import annotations

import re
import secrets
import signal
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from pathlib import Path

import httpx
import pytest

from reports_kit import Acks, behind, connected, silenced
from skylift.devices.nodes import STOPPED_TAKEN_OVER
from skylift_testkit import (
    TEST_DATABASE_URL,
    Fleet,
    Ports,
    Server,
    SimDevice,
    all_items,
    database_rows,
    database_url_for,
    firmware,
    running_server,
    wait_until,
)

pytestmark = pytest.mark.skipif(
    TEST_DATABASE_URL is None,
    reason="replicas share a PostgreSQL database: .ci/with-postgresql pytest tests/e2e/test_replicas.py",
)

DEVICES = 50
TIMEOUT_SECONDS = 3  # SKYLIFT_NODE_TIMEOUT_SECONDS: how long a silent replica waits to be taken over


@contextmanager
def replicas(data_dir: Path, *names: str) -> Iterator[list[Server]]:
    """One server per name, on the same data dir (database, files, keys), each its own ports and broker;
    started together on a new database, so that they also migrate it at the same time."""
    token = secrets.token_urlsafe(32)
    database_url_for(data_dir)  # the database itself is made once, before they start
    starting = [
        running_server(
            data_dir,
            Ports(token=token),
            log_name=name,
            SKYLIFT_NODE=name,
            SKYLIFT_NODE_TIMEOUT_SECONDS=str(TIMEOUT_SECONDS),
        )
        for name in names
    ]
    with ExitStack() as stack:
        with ThreadPoolExecutor(max_workers=len(starting)) as pool:
            futures = [pool.submit(server.__enter__) for server in starting]
        for server, future in zip(starting, futures, strict=True):
            if future.exception() is None:
                stack.push(server.__exit__)  # stopped even when another one failed to start
        yield [future.result() for future in futures]


def notices_sent(server: Server) -> float:
    text = httpx.get(f"{server.http_url}/metrics").text
    return sum(float(value) for value in re.findall(r"^skylift_notices_sent_total (\S+)$", text, re.M))


def node_of(data_dir: Path, device_ids: list[int]) -> dict[int, str | None]:
    rows = database_rows(data_dir, "SELECT id, node FROM devices")
    return {int(device_id): node for device_id, node in rows if int(device_id) in device_ids}


class TestSharedWork:
    def test_each_device_hears_its_notice_once_from_the_replica_it_is_connected_to(self, tmp_path: Path) -> None:
        data_dir = tmp_path / "data"
        with replicas(data_dir, "a", "b") as (a, b), a.api() as api_a, b.api() as api_b:
            fleet = Fleet.create(api_a)
            on_a = connected(a, fleet, 10)
            on_b = connected(b, fleet, 10)
            sims = {**on_a, **on_b}
            for sim in sims.values():
                sim.auto_step = 100
            assert node_of(data_dir, list(sims)) == {**dict.fromkeys(on_a, "a"), **dict.fromkeys(on_b, "b")}

            # Created on b: the notices of a's devices go out through a.
            package = Fleet(api=api_b, product=fleet.product).package(firmware(800, seed=501), "2.0.0")
            campaign = Fleet(api=api_b, product=fleet.product).campaign(package["id"])
            for device_id in sims:
                fleet.wait_state(campaign["id"], device_id, "succeeded", timeout=30)
            time.sleep(1.5)  # a second notice would be on its way by now
            assert {device_id: len(sim.notices) for device_id, sim in sims.items()} == dict.fromkeys(sims, 1)
            assert (notices_sent(a), notices_sent(b)) == (10, 10)
            for sim in sims.values():
                sim.disconnect()


class TestTakeover:
    def test_a_killed_replica_is_taken_over_and_every_report_it_acknowledged_is_applied(self, tmp_path: Path) -> None:
        data_dir = tmp_path / "data"
        with replicas(data_dir, "a", "b") as (a, b), a.api() as api:
            fleet = Fleet.create(api)
            devices = {int(device["id"]): device for device in (fleet.device() for _ in range(DEVICES))}
            sims = {device_id: SimDevice.token(b, device) for device_id, device in devices.items()}
            for sim in sims.values():
                sim.client.max_inflight_messages_set(20)
                sim.connect()
            campaign_id = int(fleet.campaign(fleet.package(firmware(600, seed=502), "2.0.0")["id"])["id"])
            wait_until(lambda: all(sim.notices for sim in sims.values()), timeout=30, what="every notice")
            acks = {device_id: Acks(sim) for device_id, sim in sims.items()}
            for step in range(5, 101, 5):
                for ack in acks.values():
                    ack.send({"step": str(step), "desc": f"s{step}"}, step)
            # Killed once every report is acknowledged: most of the last ones are recorded, not applied yet.
            wait_until(
                lambda: sum(len(ack.acknowledged()) for ack in acks.values()) == DEVICES * 20,
                timeout=60,
                interval=0.005,
                what="every PUBACK",
            )
            b.process.send_signal(signal.SIGKILL)
            b.process.wait()
            highest = silenced(acks)

            # a takes b over once b has been silent for TIMEOUT_SECONDS, and applies what b acknowledged.
            wait_until(
                lambda: not behind(fleet, campaign_id, highest),
                timeout=60,
                what="every report b acknowledged to be applied by a",
            )
            wait_until(
                lambda: not any(d["online"] for d in all_items(api, "/devices", product_id=fleet.product_id)),
                timeout=30,
                what="b's devices to be offline",
            )
            assert database_rows(data_dir, "SELECT name FROM nodes") == [("a",)]
            assert database_rows(data_dir, "SELECT count(*) FROM device_inbox") == [(0,)]

            # The devices come back on a and finish there.
            again = {device_id: SimDevice.token(a, device).connect() for device_id, device in devices.items()}
            assert set(node_of(data_dir, list(again)).values()) == {"a"}
            for device_id, sim in again.items():
                sim.progress_002(100)
                fleet.wait_state(campaign_id, device_id, "succeeded")
                sim.disconnect()


class TestSplitBrain:
    def test_a_replica_paused_until_it_was_taken_over_stops_when_it_resumes(self, tmp_path: Path) -> None:
        data_dir = tmp_path / "data"
        with replicas(data_dir, "a", "b") as (a, b), a.api() as api:
            fleet = Fleet.create(api)
            device = fleet.device()
            sim = SimDevice.token(b, device).connect()
            b.process.send_signal(signal.SIGSTOP)  # frozen: no heartbeat, its connections held open
            try:
                wait_until(
                    lambda: database_rows(data_dir, "SELECT name FROM nodes") == [("a",)],
                    timeout=30,
                    what="a to take b over",
                )
                assert not fleet.api.get(f"/devices/{device['id']}").json()["online"]
            finally:
                b.process.send_signal(signal.SIGCONT)
            # b must not go on as if nothing happened: what it held is a's now.
            assert b.process.wait(timeout=30) == STOPPED_TAKEN_OVER
            assert "was taken over by another node while it ran" in b.log()
            sim.disconnect()

    def test_of_two_processes_started_under_one_name_the_older_stops(self, tmp_path: Path) -> None:
        data_dir = tmp_path / "data"
        with replicas(data_dir, "a") as (first,):
            token = first.admin_token
            with running_server(data_dir, Ports(token=token), log_name="a-again", SKYLIFT_NODE="a") as second:
                assert first.process.wait(timeout=30) == STOPPED_TAKEN_OVER
                assert "another process started under its name" in first.log()
                assert second.process.poll() is None
                with second.api() as api:
                    assert api.get("/products").status_code == 200


class TestRevocation:
    def test_credentials_rotated_on_one_replica_close_the_connection_on_the_other(self, tmp_path: Path) -> None:
        with replicas(tmp_path / "data", "a", "b") as (a, b), a.api() as api:
            fleet = Fleet.create(api)
            device = fleet.device()
            sim = SimDevice.token(b, device).connect()
            assert api.post(f"/devices/{device['id']}/credentials").status_code == 200
            wait_until(lambda: not sim.connected, timeout=10, what="b to close the connection")
            assert SimDevice.token(b, device).try_connect().is_failure  # the old token is refused
            disabled = fleet.device()
            other = SimDevice.token(b, disabled).connect()
            assert api.patch(f"/devices/{disabled['id']}", json={"enabled": False}).status_code == 200
            wait_until(lambda: not other.connected, timeout=10, what="b to close the disabled device's connection")
