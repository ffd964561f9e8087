"""The embedded broker bounds what a socket may cost: silent sockets, oversized packets and floods from
one address lock out neither a device nor the HTTP API (a server under a 1,024 descriptor limit)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from mqtt_raw import closed_within, connect_packet, remaining_length
from skylift_testkit import Fleet, Server, SimDevice, firmware, running_server

CONNECT_TIMEOUT_S = 10
PER_ADDRESS = 300


# The flood runs in a process of its own: its sockets must not crowd the test's paho clients
# (paho's loop uses select(), which cannot watch a descriptor above 1,023).
FLOOD = textwrap.dedent(
    """
    import resource, socket, sys
    from mqtt_raw import closed_within
    port, per_source, sources, wait = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3].split(","), float(sys.argv[4])
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    flood = [
        socket.create_connection(("127.0.0.1", port), timeout=10, source_address=(source, 0))
        for source in sources
        for _ in range(per_source)
    ]
    print("open", len(flood), flush=True)
    sys.stdin.readline()
    print("closed", closed_within(flood, wait), flush=True)
    """
)


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with running_server(
        tmp_path_factory.mktemp("limited"),
        open_files=1024,
        SKYLIFT_MQTT_CONNECT_TIMEOUT_SECONDS=str(CONNECT_TIMEOUT_S),
        SKYLIFT_MQTT_MAX_CONNECTIONS_PER_ADDRESS=str(PER_ADDRESS),
    ) as server:
        yield server


def silent_sockets(server: Server, count: int, source: str) -> list[socket.socket]:
    return [
        socket.create_connection(("127.0.0.1", server.mqtt_port), timeout=10, source_address=(source, 0))
        for _ in range(count)
    ]


def metric(server: Server, name: str, reason: str) -> float:
    for line in httpx.get(f"{server.http_url}/metrics").text.splitlines():
        if line.startswith(f'{name}{{reason="{reason}"}}'):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def close_all(sockets: list[socket.socket]) -> None:
    for sock in sockets:
        sock.close()


class TestSilentSockets:
    def test_1100_silent_sockets_lock_out_neither_a_device_nor_the_api(self, limited: Server) -> None:
        api = limited.api()
        fleet = Fleet.create(api)
        device = fleet.device()
        # From four addresses of the loopback network: no per-address cap is reached.
        sources = ",".join(f"127.0.0.{2 + n}" for n in range(4))
        flood = subprocess.Popen(
            [sys.executable, "-c", FLOOD, str(limited.mqtt_port), "275", sources, str(CONNECT_TIMEOUT_S * 3)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])},
        )
        assert flood.stdin is not None
        assert flood.stdout is not None
        try:
            assert flood.stdout.readline().split() == ["open", "1100"]
            sim = SimDevice.token(limited, device).connect()
            assert sim.connected
            assert api.get(f"/devices/{device['id']}").status_code == 200
            campaign = fleet.campaign(fleet.package(firmware(500, seed=71), "2.0.0")["id"])
            assert sim.notice()["params"]["version"] == "2.0.0"
            sim.progress_002(100)
            fleet.wait_state(campaign["id"], device["id"], "succeeded")
            sim.disconnect()
            assert metric(limited, "skylift_mqtt_refused_connections_total", "displaced while waiting for CONNECT") > 0
            # The ones still open are closed at the CONNECT timeout.
            flood.stdin.write("\n")
            flood.stdin.flush()
            assert flood.stdout.readline().split() == ["closed", "1100"]
        finally:
            flood.kill()
            flood.wait()

    def test_a_socket_that_never_sends_connect_is_closed_at_the_timeout(self, limited: Server) -> None:
        (sock,) = silent_sockets(limited, 1, "127.0.0.20")
        try:
            started = time.monotonic()
            assert closed_within([sock], CONNECT_TIMEOUT_S * 3) == 1
            assert time.monotonic() - started >= CONNECT_TIMEOUT_S * 0.8
        finally:
            sock.close()

    def test_one_address_gets_no_more_than_its_share(self, limited: Server) -> None:
        sockets = silent_sockets(limited, PER_ADDRESS + 20, "127.0.0.30")
        try:
            # The 20 beyond the cap are closed at once (the others wait for their CONNECT timeout,
            # which may already have come for the first ones on a slow machine).
            assert closed_within(sockets[PER_ADDRESS:], CONNECT_TIMEOUT_S * 0.5) == 20
            sim = SimDevice.token(limited, Fleet.create(limited.api()).device()).connect()
            assert sim.connected
            sim.disconnect()
        finally:
            close_all(sockets)


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


class TestPacketSize:
    def test_a_64_mib_publish_is_refused_before_it_is_read(self, limited: Server) -> None:
        device = Fleet.create(limited.api()).device()
        token = device["access_token"]
        sock = socket.create_connection(("127.0.0.1", limited.mqtt_port), timeout=10)
        sock.sendall(connect_packet("big-sender", token))
        assert sock.recv(4) == b"\x20\x02\x00\x00"
        before = rss_kib(limited.process.pid)
        peak = [before]
        stop = threading.Event()

        def sample() -> None:
            while not stop.is_set():
                peak[0] = max(peak[0], rss_kib(limited.process.pid))
                time.sleep(0.005)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        topic = f"/ota/device/progress/{token}".encode()
        size = 64 * 1024 * 1024
        header = bytes([0x30]) + remaining_length(2 + len(topic) + size) + len(topic).to_bytes(2, "big") + topic
        chunk = b"\x00" * (1024 * 1024)
        sent = 0
        try:
            sock.sendall(header)
            while sent < size:
                sock.sendall(chunk)
                sent += len(chunk)
        except OSError:
            pass  # closed by the server, as it should be
        finally:
            time.sleep(0.3)
            stop.set()
            sampler.join()
            sock.close()
        assert sent < size, "the server read the whole 64 MiB packet"
        assert peak[0] - before < 5 * 1024, f"RSS grew by {peak[0] - before} KiB"
        assert metric(limited, "skylift_mqtt_refused_connections_total", "packet too large") >= 1
        sim = SimDevice.token(limited, device).connect()  # the device itself may come back
        assert sim.connected
        sim.disconnect()
