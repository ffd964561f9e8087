"""Devices that report in bursts, and which of their reports the broker acknowledged (for kill tests)."""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from skylift_testkit import Fleet, Server, SimDevice, firmware, wait_until


class Acks:
    """Which of a device's QoS 1 messages the broker acknowledged (PUBACK), seen from paho."""

    def __init__(self, sim: SimDevice) -> None:
        self.sim = sim
        self.sent: dict[int, Any] = {}
        self.acked: set[int] = set()
        self._lock = threading.Lock()
        sim.client.on_publish = self._on_publish

    def _on_publish(self, _client: Any, _userdata: Any, mid: int, _reason: Any, _properties: Any) -> None:
        with self._lock:
            self.acked.add(mid)

    def send(self, body: dict[str, Any], what: Any) -> None:
        info = self.sim.client.publish(f"/ota/device/progress/{self.sim.topic_id}", json.dumps(body).encode(), qos=1)
        self.sent[info.mid] = what

    def acknowledged(self) -> list[Any]:
        with self._lock:
            return [self.sent[mid] for mid in self.acked if mid in self.sent]


def connected(server: Server, fleet: Fleet, count: int, inflight: int = 20) -> dict[int, SimDevice]:
    """`count` new token devices, connected with paho's in-flight window set to `inflight`; by device id."""
    sims = {}
    for device in [fleet.device() for _ in range(count)]:
        sim = SimDevice.token(server, device)
        sim.client.max_inflight_messages_set(inflight)
        sims[int(device["id"])] = sim.connect()
    return sims


def notify(fleet: Fleet, sims: dict[int, SimDevice], seed: int) -> int:
    """A campaign to the fleet; returns its id once every device heard its notice."""
    campaign_id = int(fleet.campaign(fleet.package(firmware(500, seed=seed), "2.0.0")["id"])["id"])
    wait_until(lambda: all(sim.notices for sim in sims.values()), timeout=30, what="every notice")
    return campaign_id


def stop_network_loop(sim: SimDevice) -> None:
    try:
        sim.client.loop_stop()
    except AttributeError:
        pass  # paho: its loop thread ended by itself (the server is gone) between loop_stop's check and its join


def silenced(acks: dict[int, Acks]) -> dict[int, int]:
    """Stop every device's network loop (no reconnect, no resend: what counts is what the server kept);
    the highest step of each device that the broker acknowledged."""
    with ThreadPoolExecutor(max_workers=len(acks)) as pool:
        list(pool.map(stop_network_loop, (ack.sim for ack in acks.values())))
    return {device_id: max(ack.acknowledged(), default=0) for device_id, ack in acks.items()}


def behind(fleet: Fleet, campaign_id: int, highest: dict[int, int]) -> dict[int, tuple[int, int]]:
    """The devices whose attempt shows less progress than their highest acknowledged step: (shown, step)."""
    attempts = fleet.attempts(campaign_id)
    return {
        device_id: (attempts[device_id]["progress"], step)
        for device_id, step in highest.items()
        if attempts[device_id]["progress"] < step
    }
