"""Building Skylift's Mosquitto plugin from the C sources shipped with Skylift, and its configuration."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

SOURCES = ("skylift_plugin.c", "skylift_rules.c")
# Debian's packages with what the build needs (Mosquitto's plugin headers, cJSON, libcurl, uthash).
BUILD_PACKAGES = "mosquitto-dev libmosquitto-dev libcjson-dev libcurl4-openssl-dev uthash-dev gcc"


class BuildFailed(Exception):
    """The compiler is missing or refused the sources; the message says what to install."""


def build(output: Path, compiler: str | None = None) -> Path:
    """Compile the plugin into `output` (a shared library for the Mosquitto on this machine)."""
    here = Path(__file__).parent
    cc = compiler or shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        raise BuildFailed(f"no C compiler found; on Debian: apt-get install {BUILD_PACKAGES}")
    output.parent.mkdir(parents=True, exist_ok=True)
    command = [cc, "-shared", "-fPIC", "-O2", "-Wall", "-o", str(output), *(str(here / s) for s in SOURCES)]
    done = subprocess.run([*command, "-lcjson", "-lcurl"], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise BuildFailed(
            f"the plugin did not compile ({done.stderr.strip()[-2000:]}); on Debian: apt-get install {BUILD_PACKAGES}"
        )
    return output


def config_lines(plugin: Path, login_url: str, username: str, password: str) -> list[str]:
    """What mosquitto.conf needs for Skylift (besides its listeners)."""
    return [
        "per_listener_settings false",
        "allow_anonymous false",
        # Mosquitto's connection lines name each client's username: a token device's access token.
        "connection_messages false",
        f"plugin {plugin}",
        f"plugin_opt_auth_url {login_url}",
        f"plugin_opt_service_username {username}",
        f"plugin_opt_service_password {password}",
        # Skylift acknowledges a device message once it has recorded it: many may be on their way at once,
        # and what waits for Skylift while it restarts must not be cut short.
        "max_inflight_messages 1000",
        "max_queued_messages 1000000",
        "persistence true",
    ]
