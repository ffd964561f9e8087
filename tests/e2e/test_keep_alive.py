"""A device that falls silent is dropped after 1.5 times its keep-alive ([MQTT-3.1.2-24]) and shown
offline; one that pings in time stays connected."""

from __future__ import annotations

import socket
import time

import httpx

from mqtt_raw import closed_within, connect_packet
from skylift_testkit import Fleet, Server, wait_until

KEEP_ALIVE_S = 2
PINGREQ = b"\xc0\x00"


def logged_in(server: Server, token: str) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.mqtt_port), timeout=10)
    sock.sendall(connect_packet("silent", token, keep_alive=KEEP_ALIVE_S))
    assert sock.recv(4) == b"\x20\x02\x00\x00"  # CONNACK, accepted
    return sock


def test_a_silent_device_is_dropped_and_shown_offline(server: Server, api: httpx.Client) -> None:
    device = Fleet.create(api).device()
    sock = logged_in(server, device["access_token"])
    with sock:
        started = time.monotonic()
        wait_until(lambda: api.get(f"/devices/{device['id']}").json()["online"], what="the device to be online")
        assert closed_within([sock], 3 * KEEP_ALIVE_S) == 1
        silent_for = time.monotonic() - started
    assert 1.5 * KEEP_ALIVE_S - 0.5 <= silent_for <= 1.5 * KEEP_ALIVE_S + 2
    wait_until(lambda: not api.get(f"/devices/{device['id']}").json()["online"], what="the device to be offline")


def test_a_device_that_pings_in_time_stays_connected(server: Server, api: httpx.Client) -> None:
    device = Fleet.create(api).device()
    sock = logged_in(server, device["access_token"])
    with sock:
        for _ in range(4):  # 4 s: twice the keep-alive, longer than 1.5 times it
            time.sleep(KEEP_ALIVE_S / 2)
            sock.sendall(PINGREQ)
            assert sock.recv(2) == b"\xd0\x00"  # PINGRESP
        assert api.get(f"/devices/{device['id']}").json()["online"] is True
