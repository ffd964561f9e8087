"""The API's reads answer while another connection holds SQLite's write lock (devices' reports, the
rollout engine, an import): an operator's lists never queue behind the fleet's writes. Writes still wait
their turn, and are committed once the lock is free."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

import httpx
import pytest

from skylift_testkit import TEST_DATABASE_URL, Fleet, firmware, read_paths, running_server, unique

pytestmark = pytest.mark.skipif(bool(TEST_DATABASE_URL), reason="SQLite's single writer lock")


def test_reads_answer_while_the_write_lock_is_held(tmp_path: Path) -> None:
    with running_server(tmp_path / "data") as server, server.api() as api:
        fleet = Fleet.create(api)
        device = fleet.device()
        package = fleet.package(firmware(500, seed=1401), "1.0.0")
        campaign = fleet.campaign(package["id"], device_ids=[device["id"]], push=False)
        reads = [*read_paths(fleet.product_id, device["id"], package["id"], campaign["id"]), "/users"]
        holder = sqlite3.connect(server.data_dir / "skylift.db", isolation_level=None, timeout=30)
        holder.execute("BEGIN IMMEDIATE")
        written: list[httpx.Response] = []
        try:
            started = time.monotonic()
            answers = {path: api.get(path, timeout=5) for path in reads}
            elapsed = time.monotonic() - started
            # A write meanwhile waits for the lock (SQLite's busy timeout is 30 s), then goes through.
            writer = threading.Thread(
                target=lambda: written.append(api.post("/products", json={"name": unique("p")}, timeout=40))
            )
            writer.start()
            writer.join(1.0)
            assert writer.is_alive(), "a write went through while another connection held the write lock"
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        writer.join(30)
        assert {path: r.status_code for path, r in answers.items()} == dict.fromkeys(reads, 200)
        assert elapsed < 5, f"{len(reads)} reads took {elapsed:.1f} s beside the writer"
        assert [r.status_code for r in written] == [201]
        assert api.get(f"/products/{written[0].json()['id']}").status_code == 200
