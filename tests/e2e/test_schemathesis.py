"""schemathesis explores the whole API from its own OpenAPI document: no input may earn a 5xx."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from skylift_testkit import Fleet, firmware, running_server

MAX_EXAMPLES = 30  # about 30 s here, on the real and on the shifted date
SEED = int(os.environ.get("SKYLIFT_SCHEMATHESIS_SEED", "20251129"))


@pytest.mark.timeout(1800)  # the subprocess has 1500 s
def test_no_generated_request_gets_a_server_error(tmp_path: Path) -> None:
    # Its own server: schemathesis changes settings and rotates credentials that other tests rely on.
    with running_server(tmp_path / "data") as server, server.api() as api:
        # Something for small generated ids to find: a product, a device, a package and a campaign.
        fleet = Fleet.create(api)
        device = fleet.device()
        package = fleet.package(firmware(1000, seed=63), "1.0.0", filename="固件.bin")
        fleet.campaign(package["id"], device_ids=[device["id"]], push=False)

        # The client runs on the real clock: the shifted date is for the server under test, and
        # libfaketime's wrappers of every clock read make hypothesis's generation many times slower.
        client_env = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD" and not k.startswith("FAKETIME")}
        started = time.monotonic()
        command = [
            sys.executable,
            "-m",
            "schemathesis.cli",
            "run",
            f"{server.http_url}/openapi.json",
            "--header",
            f"Authorization: Bearer {server.admin_token}",
            "--checks",
            "not_a_server_error",
            "--max-examples",
            str(MAX_EXAMPLES),
            "--seed",
            str(SEED),
            "--workers",
            "1",
            "--generation-database",
            "none",
            "--request-timeout",
            "30",
            "--no-color",
        ]
        try:
            run = subprocess.run(command, cwd=tmp_path, env=client_env, capture_output=True, text=True, timeout=1500)
        except subprocess.TimeoutExpired as stuck:
            output = stuck.output.decode(errors="replace") if isinstance(stuck.output, bytes) else stuck.output or ""
            report = f"schemathesis stuck; its output:\n{output[-4000:]}\nserver:\n{server.log()[-8000:]}"
            raise AssertionError(report) from None
        elapsed = time.monotonic() - started
        # What the server said beside its access log: a slow or stuck request leaves its traces there.
        remarks = [line for line in server.log().splitlines() if not line.startswith("INFO:")]
        report = run.stdout[-6000:] + run.stderr[-2000:] + "\nserver:\n" + "\n".join(remarks[-60:])
        assert run.returncode == 0, report
        assert " passed" in run.stdout, report
        assert "Exception in ASGI application" not in server.log()
        print(f"schemathesis: {elapsed:.0f}s, {run.stdout.splitlines()[-1]}")
