"""README's quick start ("A first campaign with curl"), its shell blocks run as written, ends in success."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

from skylift_testkit import running_server

README = Path(__file__).resolve().parents[2] / "README.md"
SECTION = "### A first campaign with curl"


def quick_start_blocks(text: str) -> list[str]:
    """The `sh` blocks of README's section, from its heading to the next heading."""
    section = text[text.index(SECTION) + len(SECTION) :]
    section = re.split(r"^#{2,3} ", section, flags=re.M)[0]
    return re.findall(r"^```sh\n(.*?)^```", section, flags=re.M | re.S)


def test_the_section_has_its_steps() -> None:
    script = "\n".join(quick_start_blocks(README.read_text()))
    for step in ("head -c", "POST $API/devices", "skylift device", "POST $API/campaigns", "finished"):
        assert step in script


def test_the_quick_start_ends_in_success(tmp_path: Path) -> None:
    """As a new operator runs it: in the folder where `skylift serve` keeps `skylift-data`, against the
    server's ports (the README's own API and MQTT_PORT variables)."""
    script = "set -euo pipefail\n" + "\n".join(quick_start_blocks(README.read_text()))
    with running_server(tmp_path / "skylift-data", generated_token=True) as server:
        environment = {
            **os.environ,
            "API": f"{server.http_url}/api/v1",
            "MQTT_PORT": str(server.mqtt_port),
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        }
        process = subprocess.Popen(
            ["bash", "-c", script],
            cwd=tmp_path,
            env=environment,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,  # the background device too is ended if the script hangs
        )
        try:
            output, _ = process.communicate(timeout=150)
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        assert process.returncode == 0, output
        with server.api() as api:
            campaign = api.get("/campaigns/1").json()
            devices = api.get("/campaigns/1/devices").json()["items"]
    assert (campaign["state"], campaign["counts"], campaign["success_rate"]) == ("finished", {"succeeded": 1}, 1.0)
    assert [(d["device_name"], d["state"], d["progress"]) for d in devices] == [("t-0001", "succeeded", 100)]
    assert '"state":"finished"' in output
