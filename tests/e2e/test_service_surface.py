"""What an operator meets first: the API docs without internet, `serve --help`, a port already taken."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from skylift.config import settings_table
from skylift_testkit import Server, free_port

# Anything that names another host: scheme-relative URLs, absolute URLs, font and CDN services.
EXTERNAL = re.compile(r"(?:https?:)?//[A-Za-z0-9.-]+\.[A-Za-z]{2,}|googleapis|jsdelivr|unpkg|cdnjs")


def serve(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "skylift.cli", "serve", *args],
        env={**os.environ, "COLUMNS": "250", **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


class TestDocs:
    @pytest.mark.parametrize("page", ["/docs", "/redoc"])
    def test_pages_load_everything_from_the_server_itself(self, server: Server, page: str) -> None:
        response = httpx.get(f"{server.http_url}{page}")
        assert response.status_code == 200
        html = response.text
        assert not EXTERNAL.search(html), EXTERNAL.search(html)
        assets = re.findall(r'(?:src|href)="([^"]+)"', html)
        assert assets
        for asset in assets:
            assert asset.startswith("/"), asset
            fetched = httpx.get(f"{server.http_url}{asset}")
            assert fetched.status_code == 200, asset
            assert len(fetched.content) > 1000, asset
        assert "/openapi.json" in html


class TestServeHelp:
    def test_lists_every_setting_with_its_default(self) -> None:
        run = serve("--help")
        assert run.returncode == 0
        lines = run.stdout.splitlines()
        for variable, default, _ in settings_table():
            line = next((line for line in lines if re.search(rf"\b{variable}\b", line)), None)
            assert line is not None, variable
            assert f" {default} " in f"{line} ", (variable, default, line)


class TestPortInUse:
    @pytest.mark.parametrize("taken", ["SKYLIFT_HTTP_PORT", "SKYLIFT_MQTT_PORT"])
    def test_one_clear_line_and_a_failure(self, tmp_path: Path, taken: str) -> None:
        with socket.socket() as holder:
            holder.bind(("127.0.0.1", 0))
            holder.listen()
            ports = {"SKYLIFT_HTTP_PORT": str(free_port()), "SKYLIFT_MQTT_PORT": str(free_port())}
            ports[taken] = str(holder.getsockname()[1])
            run = serve(
                SKYLIFT_DATA_DIR=str(tmp_path / "data"),
                SKYLIFT_HTTP_HOST="127.0.0.1",
                SKYLIFT_MQTT_HOST="127.0.0.1",
                **ports,
            )
        assert run.returncode == 1
        said = run.stderr.strip().splitlines()
        assert len(said) == 1, run.stderr
        assert f"127.0.0.1:{ports[taken]}" in said[0]
        assert "in use" in said[0]
        assert taken in said[0]
        assert "Traceback" not in run.stderr + run.stdout

    def test_a_wrong_setting_is_one_line_too(self, tmp_path: Path) -> None:
        run = serve(SKYLIFT_DATA_DIR=str(tmp_path / "data"), SKYLIFT_HTTP_PORT="eighty")
        assert run.returncode == 1
        assert run.stderr.strip().count("\n") == 0
        assert "SKYLIFT_HTTP_PORT" in run.stderr
