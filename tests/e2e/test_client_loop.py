"""A connection's SUBSCRIBE, UNSUBSCRIBE and relayed PUBLISH are handled by the packet's own task, in the
order they came, with no task waiting for them between packets (broker/lean.py)."""

from __future__ import annotations

import queue
import socket
from typing import Any

import httpx
import pytest

from mqtt_raw import closed_within, connect_packet, remaining_length
from skylift_testkit import Fleet, Server, SimDevice, firmware, wait_until


def online(api: httpx.Client, device: dict[str, Any]) -> bool:
    return bool(api.get(f"/devices/{device['id']}").json()["online"])


def test_subacks_come_back_in_the_order_of_the_subscribes(server: Server, api: httpx.Client) -> None:
    device = Fleet.create(api).device()
    sim = SimDevice.product_key(server, device).connect(subscribe=False)
    answered: queue.Queue[int] = queue.Queue()
    sim.client.on_subscribe = lambda _c, _u, mid, _codes, _p: answered.put(mid)
    own = sim.topic_id
    filters = [f"/ota/device/{kind}/{own}" for kind in ("upgrade", "request", "inform", "progress")] * 5
    sent = [sim.client.subscribe(topic_filter, qos=1)[1] for topic_filter in filters]  # back to back
    assert [answered.get(timeout=10) for _ in sent] == sent
    sim.disconnect()


def test_a_device_that_unsubscribes_gets_its_notice_once_it_subscribes_again(server: Server, api: httpx.Client) -> None:
    fleet = Fleet.create(api)
    device = fleet.device()
    sim = SimDevice.product_key(server, device).connect()
    unsubscribed: queue.Queue[int] = queue.Queue()
    sim.client.on_unsubscribe = lambda _c, _u, mid, _codes, _p: unsubscribed.put(mid)
    upgrade = f"/ota/device/upgrade/{sim.topic_id}"
    mid = sim.client.unsubscribe(upgrade)[1]
    assert unsubscribed.get(timeout=10) == mid
    package = fleet.package(firmware(500, seed=7), "2.0.0")
    campaign = fleet.campaign(package["id"], device_ids=[device["id"]], offline="deliver_on_connect")
    assert sim.no_message(within=1.5)
    # Not shown as notified: nothing it listens to would have carried the notice.
    assert fleet.attempts(campaign["id"])[device["id"]]["state"] == "pending"
    assert not sim.subscribe(upgrade)[0].is_failure
    assert sim.notice()["data"]["version"] == "2.0.0"
    fleet.wait_state(campaign["id"], device["id"], "notified")
    sim.disconnect()


@pytest.mark.parametrize(
    "topic",
    [
        b"$SYS/broker/uptime",  # a client may not publish on a `$` topic ([MQTT-4.7.2-1])
        b"/ota/device/progress/+",  # nor on a topic with a wildcard ([MQTT-3.3.2-2]) ...
        b"#",  # ... which amqtt dropped after its topic, then read the rest of it as the next packets
    ],
)
def test_a_publish_on_a_topic_mqtt_forbids_closes_that_connection_only(
    server: Server, api: httpx.Client, topic: bytes
) -> None:
    fleet = Fleet.create(api)
    device, bystander = fleet.device(), fleet.device()
    other = SimDevice.product_key(server, bystander).connect()
    sock = socket.create_connection(("127.0.0.1", server.mqtt_port), timeout=10)
    with sock:
        sock.sendall(connect_packet("forbidden-topic", device["access_token"]))
        assert sock.recv(4) == b"\x20\x02\x00\x00"  # CONNACK, accepted
        wait_until(lambda: online(api, device), what="the device to be online")
        body = len(topic).to_bytes(2, "big") + topic + b'{"step": "10"}'
        sock.sendall(b"\x30" + remaining_length(len(body)) + body)  # QoS 0
        assert closed_within([sock], 5) == 1
    wait_until(lambda: not online(api, device), what="the device to be offline")
    assert online(api, bystander)
    assert other.connected
    again = SimDevice.token(server, device).connect()  # the device may come back
    wait_until(lambda: online(api, device), what="the device to be online again")
    again.disconnect()
    other.disconnect()
