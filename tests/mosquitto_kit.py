"""A real Mosquitto 2.0 with Skylift's plugin, and a Skylift server that uses it instead of its embedded broker."""

from __future__ import annotations

import getpass
import os
import shutil
import signal
import socket
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from skylift.broker.mosquitto import plugin
from skylift_testkit import Ports, Server, free_port, running_server, wait_until

SERVICE_PASSWORD = "broker-service-password-for-tests"
MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"


def mosquitto_or_skip() -> str:
    """Mosquitto's path. CI installs it and the plugin's build packages: there, missing is a failure."""
    if not Path(MOSQUITTO).exists() or not Path("/usr/include/mosquitto_broker.h").exists():
        if os.environ.get("CI"):
            pytest.fail(f"Mosquitto and the plugin's build packages are needed: {plugin.BUILD_PACKAGES}")
        pytest.skip(f"needs Mosquitto and {plugin.BUILD_PACKAGES}")
    return MOSQUITTO


@pytest.fixture(scope="session")
def plugin_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Skylift's Mosquitto plugin, built once for the test run (as `skylift mosquitto-plugin` builds it)."""
    mosquitto_or_skip()
    return plugin.build(tmp_path_factory.mktemp("plugin") / "skylift_plugin.so")


@dataclass
class Mosquitto:
    port: int
    directory: Path
    process: subprocess.Popen[bytes]

    def log(self) -> str:
        path = self.directory / "mosquitto.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()


@contextmanager
def running_mosquitto(
    directory: Path, plugin_file: Path, login_port: int, port: int | None = None
) -> Iterator[Mosquitto]:
    """Mosquitto on a free loopback port with Skylift's plugin, asking the Skylift on `login_port`."""
    executable = mosquitto_or_skip()
    directory.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    lines = [
        f"listener {port} 127.0.0.1",
        *plugin.config_lines(
            plugin_file, f"http://127.0.0.1:{login_port}/broker/v1/login", "skylift", SERVICE_PASSWORD
        ),
        f"persistence_location {directory}/",
        f"log_dest file {directory / 'mosquitto.log'}",
        "log_type error",
        "log_type warning",
        "log_type notice",
        # Run as root (in CI), Mosquitto would switch to its own user, who may not write here.
        f"user {getpass.getuser()}",
    ]
    config = directory / "mosquitto.conf"
    config.write_text("\n".join(lines) + "\n")
    process = subprocess.Popen([executable, "-c", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    broker = Mosquitto(port, directory, process)
    try:
        wait_until(lambda: _listening(port) or process.poll() is not None, timeout=15, what="Mosquitto")
        assert process.poll() is None, broker.log()
        yield broker
    finally:
        if process.poll() is None:
            process.terminate()
            process.wait(timeout=10)


def _listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return True


def broker_settings(broker: Mosquitto) -> dict[str, str]:
    return {
        "SKYLIFT_MQTT_BROKER_URL": f"mqtt://127.0.0.1:{broker.port}",
        "SKYLIFT_MQTT_BROKER_PASSWORD": SERVICE_PASSWORD,
    }


@contextmanager
def mosquitto_for_skylift(directory: Path, plugin_file: Path) -> Iterator[tuple[Mosquitto, Ports]]:
    """Mosquitto with the plugin, and the ports of the Skylift it asks (whose devices connect to Mosquitto)."""
    ports = Ports()
    with running_mosquitto(directory, plugin_file, ports.http) as broker:
        yield broker, Ports(http=ports.http, mqtt=broker.port, token=ports.token)


@contextmanager
def server_on_mosquitto(directory: Path, plugin_file: Path, **env: str) -> Iterator[tuple[Server, Mosquitto]]:
    """Mosquitto with the plugin, and Skylift using it: devices connect to `server.mqtt_port`, Mosquitto's."""
    with mosquitto_for_skylift(directory / "mosquitto", plugin_file) as (broker, ports):
        with running_server(directory / "data", ports, **broker_settings(broker), **env) as server:
            yield server, broker
